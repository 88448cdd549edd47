"""`neuron-atlas compare RUN_A RUN_B`: the run comparison of `GET /compare` and `GET /compare/concept`, for every
common stack and every matched concept, printed and (with `--out DIR`) written as Parquet. Reads the store file
directly (read-only), so no server is needed."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Parquet files written by `--out`, and what each holds (one row per ...).
OUTPUTS = {
    "runs": "side (a, b): run id, model, mode, corpus and the step compared",
    "sites": "site key in either run: status common / only_a / only_b / width_mismatch, widths, stack, layer",
    "layers": "stack x concept pair x layer: units with AP >= threshold in A and in B, and B - A",
    "concepts": "concept pair: common units, Spearman's rho, top-k count and Jaccard with their chance expectations",
    "moved": "concept pair x unit: the units whose AP moved most, with their ids in both runs",
}


def comparison_tables(reader, run_a: str, run_b: str, step_a: int | None = None, step_b: int | None = None,
                      kind: str | None = None, task: str | None = None, threshold: float = 0.9, k: int | None = None,
                      n_moved: int = 20) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The run summary (as `GET /compare`) and the comparison as tables: every common stack's per-layer counts and
    every matched concept's statistics (as `GET /compare/concept`)."""
    import pandas as pd

    from backend.store.compare import compare_concept, compare_runs, concept_pairs, layer_differences, match_sites

    run_a, run_b = reader.resolve_run(run_a), reader.resolve_run(run_b)
    summary = compare_runs(reader, run_a, run_b, step_a, step_b, kind, task, None, threshold)
    match = match_sites(reader, run_a, run_b)
    step_a, step_b = summary["step_a"], summary["step_b"]
    runs = pd.DataFrame([{"side": side, "step": summary[f"step_{side}"], **{k2: v for k2, v in summary["runs"][side].items()
                                                                           if k2 not in ("steps", "languages")}}
                         for side in ("a", "b")])
    sites = pd.concat([
        match.common.assign(status="common", width_a=match.common["width"], width_b=match.common["width"])[
            ["site", "status", "stack", "layer", "width_a", "width_b"]],
        pd.DataFrame({"site": match.only_a, "status": "only_a"}),
        pd.DataFrame({"site": match.only_b, "status": "only_b"}),
        pd.DataFrame(match.width_mismatch).assign(status="width_mismatch") if match.width_mismatch else None,
    ], ignore_index=True)
    pair_cols = ["concept_id_a", "concept_id_b", "kind", "task", "language", "modality"]
    layer_rows = []
    pairs, _, _ = concept_pairs(reader, run_a, run_b, step_a, step_b, kind, task)
    for stack in match.stacks():
        lay = layer_differences(reader, match, pairs, stack, threshold)
        for i, pair in enumerate(lay["concepts"]):
            for j, layer in enumerate(lay["layers"]):
                layer_rows.append({"stack": stack, **{c: pair[c] for c in pair_cols}, "layer": layer,
                                   "n_units": lay["units_per_layer"][j], "count_a": lay["count_a"][i][j],
                                   "count_b": lay["count_b"][i][j], "diff": lay["diff"][i][j]})
    concept_rows, moved_rows = [], []
    for pair in pairs.to_dict("records"):
        if not pair["stacks"]:
            continue
        one = compare_concept(reader, run_a, run_b, int(pair["concept_id_a"]), step_b, None, k, n_moved, 0, match)
        top = one["top_k"]
        concept_rows.append({**{c: pair[c] for c in pair_cols}, "stacks": ",".join(one["stacks"]), "n_units": one["n_units"],
                             "spearman_rho": one["spearman_rho"], "mean_ap_a": one["mean_ap_a"], "mean_ap_b": one["mean_ap_b"],
                             "mean_abs_delta": one["mean_abs_delta"], "k": top["k"], "top_k_count": top["count"],
                             "jaccard": top["jaccard"], "expected_count": top["expected_count"],
                             "expected_jaccard": top["expected_jaccard"]})
        moved_rows += [{"concept_id_a": pair["concept_id_a"], "concept_id_b": pair["concept_id_b"], "rank": i + 1, **u}
                       for i, u in enumerate(one["moved"])]
    tables = {"runs": runs, "sites": sites, "layers": pd.DataFrame(layer_rows), "concepts": pd.DataFrame(concept_rows),
              "moved": pd.DataFrame(moved_rows)}
    return summary, tables


def print_summary(summary: dict, tables: dict[str, pd.DataFrame], out=sys.stdout) -> None:
    """The comparison in plain text: both runs, the common sites, per-layer count differences and per-concept agreement."""
    def say(line: str = "") -> None:
        print(line, file=out)

    for side in ("a", "b"):
        r = summary["runs"][side]
        say(f"run {side.upper()}: {r['run_id']} · model {r['model_spec']} ({str(r['model_checksum'])[:12]}) · {r['mode']} mode · "
            f"{r['corpus_source']} corpus · step {summary[f'step_{side}']}")
    s = summary["sites"]
    say(f"sites: {s['note']}")
    say(f"  common: {s['n_common_sites']:,} sites, {s['n_common_units']:,} units (A has {s['n_units_a']:,}, B {s['n_units_b']:,}); "
        f"only in A: {s['n_only_a']}, only in B: {s['n_only_b']}, other width: {s['n_width_mismatch']}")
    say(f"concepts matched by {', '.join(summary['matched_by'])}: {len(summary['concepts'])} pairs; "
        f"unmatched: {len(summary['unmatched_a'])} in A, {len(summary['unmatched_b'])} in B")
    layers = tables["layers"]
    if len(layers):
        say()
        say(f"units with AP >= {summary['layers']['threshold']:g}, summed over the concept pairs (B - A per layer):")
        totals = layers.groupby(["stack", "layer"], sort=False)[["count_a", "count_b", "diff"]].sum().reset_index()
        say(totals.to_string(index=False))
    concepts = tables["concepts"]
    if len(concepts):
        say()
        say("per concept: Spearman's rho of unit AP, top-k overlap (count, Jaccard) against two random k-sets:")
        cols = ["concept_id_a", "concept_id_b", "kind", "task", "language", "modality", "n_units", "spearman_rho", "k",
                "top_k_count", "jaccard", "expected_jaccard", "mean_abs_delta"]
        say(concepts[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Each table as `{name}.parquet` in `out_dir` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in tables.items():
        path = out_dir / f"{name}.parquet"
        df.to_parquet(path, index=False)
        paths.append(path)
    return paths


def _compare(args: argparse.Namespace) -> int:
    from backend.store.reader import NotFoundError, QueryError, StoreReader, StoreUnavailable
    from neuron_atlas.engine.store_schema import StoreVersionError

    try:
        reader = StoreReader(args.store)
    except (StoreUnavailable, StoreVersionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary, tables = comparison_tables(reader, args.run_a, args.run_b, args.step_a, args.step_b, args.kind,
                                            args.task, args.threshold, args.k, args.n_moved)
    except (NotFoundError, QueryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        reader.close()
    print_summary(summary, tables)
    if args.out is not None:
        paths = write_tables(tables, args.out)
        print(f"\nwrote {', '.join(p.name for p in paths)} to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand."""
    p = subparsers.add_parser("compare", help="compare two runs of the store (modes, models, corpora, or two steps of one run)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="--out writes: " + "; ".join(f"{k}.parquet ({v})" for k, v in OUTPUTS.items()))
    p.add_argument("run_a", help="run A (a run id, or `latest`)")
    p.add_argument("run_b", help="run B (may be run A: compare two of its steps with --step-a / --step-b)")
    p.add_argument("--store", type=Path, default=Path(os.environ.get("NEURON_ATLAS_STORE", "data/atlas.duckdb")),
                   help="atlas.duckdb (default: $NEURON_ATLAS_STORE or data/atlas.duckdb)")
    p.add_argument("--step-a", type=int, dest="step_a", help="run A's step (default: its first)")
    p.add_argument("--step-b", type=int, dest="step_b", help="run B's step (default: step A when B has it)")
    p.add_argument("--kind", choices=["language", "multimodal_language", "modality"], help="only concepts of this kind")
    p.add_argument("--task", help="only concepts of this task")
    p.add_argument("--threshold", type=float, default=0.9, help="a unit is selective when AP >= this (default 0.9)")
    p.add_argument("--k", type=int, help="top-k set size (default: run A's smallest analysis k)")
    p.add_argument("--n-moved", type=int, default=20, dest="n_moved", help="units that moved most per concept (default 20)")
    p.add_argument("--out", type=Path, help="write the tables as Parquet into this folder")
    p.set_defaults(func=_compare)
