"""`neuron-atlas plan`: the command line of precompute.plan (registered without importing it, so `--help` stays
free of torch and the corpus readers)."""
from __future__ import annotations

import argparse
from pathlib import Path

from precompute.devices import (DEFAULT_CPUS_PER_NODE, DEFAULT_DRIVER_GBIT, DEFAULT_GPUS_PER_NODE, DEFAULT_UTILISATION,
                                DEVICE_PEAK_TFLOPS)


def _cmd_plan(args: argparse.Namespace) -> int:
    from neuron_atlas.resources import config_path
    from precompute.cluster_plan import check_cluster, cluster_plan
    from precompute.config import load_run_config
    from precompute.plan import ResourceError, check_resources, make_plan, missing_driver

    cfg = load_run_config(config_path(args.config), {"model": args.model}, plan_only=True)
    gpus = args.gpus if args.gpus is not None else (cfg.workers if cfg.executor == "ray" else None)
    if gpus is not None:
        check_cluster(gpus, args.cpus_per_node, args.gpus_per_node, args.driver_gbit)  # before the plan's work
    plan = make_plan(cfg, flops=not args.no_flops, device_peak=args.peak, utilisation=args.utilisation)
    print("\n".join(plan.lines()))
    if gpus is not None:
        print("\n".join(cluster_plan(plan, gpus, args.cpus_per_node, args.gpus_per_node, args.driver_gbit).lines()))
    driver = missing_driver(cfg.work_dir)
    if driver:
        print(f"work_dir {cfg.work_dir}: {driver}; precompute refuses this config until the driver is installed "
              "(on the driver machine and every node)")
    try:
        check_resources(plan, cfg)
        print(f"this machine: fits (work_dir {cfg.work_dir}, store {cfg.store})")
    except ResourceError as exc:
        print(f"this machine: does not fit: {exc}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print what a precompute run will need (items, bytes, disk, RAM, GPU time)")
    p.add_argument("--config", type=Path, required=True,
                   help="run.yaml, or a shipped config: demo | tiny | fleurs-large | fleurs-102")
    p.add_argument("--model", help="override the config's model (e.g. full-random for the large architecture)")
    p.add_argument("--peak", default="h200-bf16", choices=sorted(DEVICE_PEAK_TFLOPS), help="device peak for GPU time")
    p.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION, help="fraction of the peak reached")
    p.add_argument("--no-flops", action="store_true", help="skip the counted forward passes")
    p.add_argument("--gpus", type=int, help="also plan the run on a Ray cluster of this many GPUs (default for a "
                                            "config with executor: ray: its workers)")
    p.add_argument("--gpus-per-node", type=int, default=DEFAULT_GPUS_PER_NODE, help="GPUs per cluster node")
    p.add_argument("--cpus-per-node", type=int, default=DEFAULT_CPUS_PER_NODE,
                   help="CPU cores per cluster node (statistics run as one-CPU Ray tasks)")
    p.add_argument("--driver-gbit", type=float, default=DEFAULT_DRIVER_GBIT,
                   help="the driver's network link in Gbit/s (every recording result passes through it)")
    p.set_defaults(func=_cmd_plan)
