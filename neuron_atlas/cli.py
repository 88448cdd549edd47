"""`neuron-atlas` command line: precompute | plan | sites | serve | app | demo | compare."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path


def _cmd_sites(args: argparse.Namespace) -> int:
    from neuron_atlas.engine.model.loading import load_model
    from neuron_atlas.engine.model.unit_sites import SiteRegistry

    t0 = time.perf_counter()
    device = "meta" if args.model == "full-random" and args.device == "auto" else args.device
    bundle = load_model(args.model, device=device)
    registry = SiteRegistry.from_model(bundle.model)
    print(f"model {args.model} ({device}): {len(registry.sites)} sites, {registry.n_units:,} units")
    print(registry.counts().to_string())
    if args.list:
        print(registry.sites_frame()[["key", "stack", "layer", "component", "kind", "width", "channel_axis", "domain"]].to_string())
    print(f"({time.perf_counter() - t0:.2f} s)")
    return 0


def _cmd_precompute(args: argparse.Namespace) -> int:
    from neuron_atlas.resources import config_path
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    if args.config is not None:
        args.config = config_path(args.config)
    overrides = {"model": args.model, "store": args.store, "work_dir": args.work_dir, "mode": args.mode, "device": args.device,
                 "executor": args.executor, "workers": args.workers}
    cfg = load_run_config(args.config, overrides)
    result = run_precompute(cfg, progress=not args.quiet)
    print(f"run {result.run_id}: {sum(result.n_items.values())} items over {len(result.n_items)} tasks in {result.elapsed_s:.1f} s")
    print(f"store: {result.store.resolve()}")
    return 0


#: Packages that add their own subcommands: each module has `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = ("backend.api.commands", "app.commands", "neuron_atlas.demo",
                                     "neuron_atlas.demo_trainer.commands", "backend.store.compare_commands",
                                     "precompute.plan_commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuron-atlas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sites", help="list unit sites and per-stack/component unit counts of a model")
    p.add_argument("--model", default="demo", help="demo | tiny-random | full-random | local folder | hub id")
    p.add_argument("--device", default="auto")
    p.add_argument("--list", action="store_true", help="print every site")
    p.set_defaults(func=_cmd_sites)

    p = sub.add_parser("precompute", help="record units over a corpus and compute the atlas store")
    p.add_argument("--config", type=Path, help="run.yaml, or a shipped config by name: demo | tiny | fleurs-large "
                                                  "(defaults apply when omitted)")
    p.add_argument("--model", help="override the config's model")
    p.add_argument("--store", type=Path, help="override the store path")
    p.add_argument("--work-dir", dest="work_dir", help="override where activations are kept (a path or an fsspec URL)")
    p.add_argument("--mode", choices=["clean", "faithful"])
    p.add_argument("--device")
    p.add_argument("--executor", choices=["local", "ray"], help="where shards run (default local)")
    p.add_argument("--workers", type=int, help="parallel shard workers (processes locally, GPUs on Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_precompute)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean a user error (bad config, corpus, model, audio or resource). Imported only once a
    command has failed, so `--help` and light commands never load torch or transformers."""
    from neuron_atlas.engine.audio import AudioError
    from neuron_atlas.engine.model.loading import ModelLoadError
    from neuron_atlas.resources import ResourceMissing
    from precompute.config import ConfigError
    from precompute.corpus import CorpusError

    return ConfigError, CorpusError, ModelLoadError, AudioError, ResourceMissing


def main(argv: list[str] | None = None) -> int:
    """Entry point: known user errors print one clear message and exit 2, never a traceback."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
