"""`neuron-atlas train-demo`: train the shipped demo model (or a quick smoke-test model) from scratch."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from neuron_atlas.resources import demo_model_dir

DEMO_MODEL_DIR = demo_model_dir()

#: Peak learning rate when continuing from a trained model (--init-from).
CONTINUE_LR = 3e-4


def _cmd_train_demo(args: argparse.Namespace) -> int:
    from neuron_atlas.demo_trainer.train import QUICK_DATA, QUICK_TRAIN, TrainConfig, train_demo_model
    from neuron_atlas.demo_trainer.data import DataConfig

    if args.minutes is not None and args.minutes <= 0:
        raise SystemExit(f"error: --minutes must be positive, got {args.minutes}")
    train_cfg, data_cfg = (QUICK_TRAIN, QUICK_DATA) if args.quick else (TrainConfig(), DataConfig())
    if args.init_from is not None:
        if not (Path(args.init_from) / "training_report.json").is_file():
            raise SystemExit(f"error: --init-from {args.init_from} is not a model folder written by train-demo "
                             "(no training_report.json)")
        train_cfg = replace(train_cfg, text_phase=0.0, warmup=0.02, lr=CONTINUE_LR)
    overrides = {k: v for k, v in {"minutes": args.minutes, "steps": args.steps, "threads": args.threads,
                                   "lr": args.lr, "steer_weight": args.steer_weight,
                                   "evidence_weight": args.evidence_weight}.items() if v is not None}
    overrides["source_language_labels"] = args.first_label == "source"
    train_cfg = replace(train_cfg, seed=args.seed, **overrides)
    data_cfg = replace(data_cfg, seed=args.seed)
    report = train_demo_model(Path(args.out), train_cfg, data_cfg, cache_dir=args.cache_dir,
                              progress=not args.quiet, init_from=args.init_from)
    train, summary = report["train"], report["metrics"]["summary"]
    print(f"trained {train['steps']} steps in {train['seconds'] / 60:.1f} min (stopped by {train['stopped_by']}); "
          f"whole run {report['total_seconds'] / 60:.1f} min; {train['n_parameters']:,} parameters")
    print("held-out: " + json.dumps({k: summary[k] for k in ("asr_cer_max", "x2en_chrfpp_min", "target_language_min")}))
    print(f"bars met: {json.dumps(summary['passed'])}")
    print(f"saved to {Path(args.out).resolve()} (model card: README.md, numbers: training_report.json)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-demo` subcommand."""
    p = subparsers.add_parser("train-demo", help="train the demo model (small SeamlessM4Tv2) from scratch on CPU")
    p.add_argument("--out", type=Path, default=DEMO_MODEL_DIR, help="output folder (default: assets/demo-model)")
    p.add_argument("--minutes", type=float, help="training-time budget in minutes (default 50; --quick: 3)")
    p.add_argument("--steps", type=int, help="maximum optimiser steps (default 6000; --quick: 60)")
    p.add_argument("--seed", type=int, default=0, help="seed for data, voices, initialisation and batches")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads for training (default 0: re-measure 1 against all cores and keep the faster)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default 1.5e-3; with --init-from {CONTINUE_LR:g})")
    p.add_argument("--init-from", type=Path, dest="init_from",
                   help="continue training a model folder written by train-demo (its weights and tokenizer; no "
                        "text-only phase, short warm-up, lower learning rate)")
    p.add_argument("--first-label", choices=("source", "target"), default="source", dest="first_label",
                   help="label of the first decoder position: the input's language (default) or the target language")
    p.add_argument("--steer-weight", type=float, dest="steer_weight",
                   help="weight of the steerability objective (neuron_atlas/demo_trainer/steering.py; default 0: off)")
    p.add_argument("--evidence-weight", type=float, dest="evidence_weight",
                   help="weight of the language-evidence objective (neuron_atlas/demo_trainer/language_evidence.py; "
                        "default 0: off)")
    p.add_argument("--cache-dir", type=Path, dest="cache_dir", help="speech/feature cache (default: corpus cache)")
    p.add_argument("--quick", action="store_true", help="tiny model and data: a smoke run of the whole pipeline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train_demo)
