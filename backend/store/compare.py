"""Compare two runs of one store: which unit sites they share, how selective-unit counts per layer differ, and how one
concept's unit APs agree (Spearman's rho, top-k overlap against chance, the units that moved most).

Runs may come from different models: only sites with the same key and width are compared, and a unit is the same
unit in both runs when its (site, channel) is, whatever its global id. Concepts are matched by (kind, task,
language, modality) between a step of run A and a step of run B, so one run at step 2 can be compared with itself at
step 12. Everything is vectorised over units (numpy arrays built from the small `sites` table, one DuckDB query per
run and concept); nothing loops over units in Python.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from cachetools import LRUCache
from scipy.special import gammaln

from backend.store.reader import NotFoundError, QueryError, RunLayout, StoreReader, clean_record

#: Concept fields that identify "the same concept" in two runs (besides the step, chosen per side).
MATCH_KEY: tuple[str, ...] = ("kind", "task", "language", "modality")
#: Stack order of the model (speech encoder, text encoder, decoder).
STACK_ORDER: tuple[str, ...] = ("speech_encoder", "text_encoder", "text_decoder")
#: Site keys listed per category in a summary (the counts are always complete).
MAX_LISTED_SITES = 200
#: Shared top-k units listed in a concept comparison (best in run A first; `count` is always complete).
MAX_LISTED_UNITS = 200
#: Default number of "moved most" units and of scatter points sent for one concept.
DEFAULT_MOVED = 20
DEFAULT_MAX_POINTS = 5000
#: Bins per axis of the AP-vs-AP density.
DENSITY_BINS = 40
#: Seed of the scatter's subsample when a concept has more units than `max_points`.
SAMPLE_SEED = 0


def _known(values: Sequence, limit: int = 12) -> str:
    vals = [str(v) for v in values]
    more = f", ... ({len(vals)} in all)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more if vals else "none"


def _count(n: int, word: str) -> str:
    """`1 site`, `3 sites`."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _ranges_sql(ranges: Sequence[tuple[int, int]]) -> str:
    """SQL condition for unit ids in any of the (server-built, integer) [start, stop) ranges."""
    if not ranges:
        return "FALSE"
    return "(" + " OR ".join(f"(unit_id >= {int(a)} AND unit_id < {int(b)})" for a, b in ranges) + ")"


def _merged_ranges(starts: np.ndarray, widths: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges of sites, adjacent ones merged (sites sorted by start)."""
    order = np.argsort(starts, kind="stable")
    out: list[tuple[int, int]] = []
    for start, width in zip(starts[order].tolist(), widths[order].tolist()):
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], start + width)
        else:
            out.append((start, start + width))
    return out


def expected_jaccard(n_units: int, k: int) -> float:
    """Expected Jaccard index of two independent uniformly random k-subsets of n units (the shared count is
    hypergeometric: J = x / (2k - x))."""
    if k <= 0 or n_units <= 0:
        return 0.0
    if k >= n_units:
        return 1.0
    x = np.arange(max(0, 2 * k - n_units), k + 1)
    log_pmf = (_log_choose(k, x) + _log_choose(n_units - k, k - x) - _log_choose(n_units, k))
    return float(np.sum(np.exp(log_pmf) * x / (2 * k - x)))


def _log_choose(n, r):
    """log C(n, r), vectorised over r (gammaln: exact enough and O(1) per term, unlike scipy's hypergeom.pmf at large n)."""
    return gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1)


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho with average ranks for ties (as the store's `spearman` table); None when a side is constant."""
    return _rho_of_ranks(_average_ranks(a, _ranking(a)), _average_ranks(b, _ranking(b)))


def _rho_of_ranks(ra: np.ndarray, rb: np.ndarray) -> float | None:
    if len(ra) < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranking(ap: np.ndarray) -> np.ndarray:
    """Positions from the highest AP down; a stable sort, so ties keep position order (units are in run A's unit
    order: ties go to the lower unit id of A, the atlas's `top` rule)."""
    return np.argsort(-ap, kind="stable")


def _average_ranks(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Average ranks (1 = largest, ties share the mean of their positions) from a descending `order` of `values`: one
    pass over the sorted values instead of a second sort (Pearson's r of these equals that of ascending ranks)."""
    n = len(values)
    if n == 0:
        return np.zeros(0)
    ranked = values[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], n]
    mean_position = (starts + ends + 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_position, ends - starts)
    return ranks


def _largest(values: np.ndarray, unit_ids: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n largest non-zero values, largest first, ties by the lower unit id (a partition, then a sort of
    the few candidates: every value tied with the n-th largest is kept so ties are broken exactly)."""
    nonzero = np.flatnonzero(values > 0)
    if n <= 0 or not len(nonzero):
        return np.zeros(0, dtype=np.int64)
    if len(nonzero) > n:
        cut = np.partition(values[nonzero], len(nonzero) - n)[len(nonzero) - n]
        nonzero = nonzero[values[nonzero] >= cut]
    return nonzero[np.lexsort((unit_ids[nonzero], -values[nonzero]))][:n]


@dataclass
class SiteMatch:
    """The unit sites two runs share (same key and width) and a vectorised map of their units onto each other."""

    run_a: str
    run_b: str
    common: pd.DataFrame
    only_a: list[str]
    only_b: list[str]
    width_mismatch: list[dict]
    n_units_a: int
    n_units_b: int
    _units: dict[tuple[str, ...], dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def n_common_units(self) -> int:
        return int(self.common["width"].sum())

    @property
    def identical(self) -> bool:
        """Both runs have exactly the same sites at the same unit ids (unit ids then mean the same unit)."""
        return (not self.only_a and not self.only_b and not self.width_mismatch
                and bool((self.common["unit_offset_a"] == self.common["unit_offset_b"]).all()))

    def stacks(self) -> list[str]:
        present = set(self.common["stack"])
        return [s for s in STACK_ORDER if s in present]

    def sites_of(self, stacks: Sequence[str]) -> pd.DataFrame:
        return self.common[self.common["stack"].isin(list(stacks))]

    def units(self, stacks: Sequence[str]) -> dict[str, np.ndarray]:
        """Every common unit of `stacks` (in run A's unit order): its id in A and in B, site row and channel (kept per
        stack list: at full scale the map is a few million entries)."""
        key = tuple(stacks)
        if key not in self._units:
            self._units[key] = self._map_units(key)
        return self._units[key]

    def _map_units(self, stacks: Sequence[str]) -> dict[str, np.ndarray]:
        sites = self.sites_of(stacks).sort_values("unit_offset_a")
        widths = sites["width"].to_numpy(np.int64)
        first = np.cumsum(widths) - widths
        site_row = np.repeat(np.arange(len(sites)), widths)
        channel = np.arange(int(widths.sum()), dtype=np.int64) - np.repeat(first, widths)
        return {
            "unit_id_a": np.repeat(sites["unit_offset_a"].to_numpy(np.int64), widths) + channel,
            "unit_id_b": np.repeat(sites["unit_offset_b"].to_numpy(np.int64), widths) + channel,
            "site_row": site_row, "channel": channel, "sites": sites.reset_index(drop=True),
        }

    def summary(self) -> dict:
        """Counts of common and non-common sites and units, with the non-common site keys (listed up to a limit)."""
        per_stack = self.common.groupby("stack")["width"].agg(["count", "sum"])
        note = ("identical unit layouts: every unit is compared" if self.identical else
                f"{_count(self.n_common_units, 'unit')} in {_count(len(self.common), 'site')} with the same key and width "
                f"are compared; {_count(len(self.only_a), 'site')} only in run A, {len(self.only_b):,} only in run B and "
                f"{len(self.width_mismatch):,} with different widths are left out")
        return {
            "identical": self.identical, "note": note,
            "n_common_sites": int(len(self.common)), "n_common_units": self.n_common_units,
            "n_units_a": self.n_units_a, "n_units_b": self.n_units_b,
            "common_by_stack": [{"stack": s, "n_sites": int(per_stack.loc[s, "count"]), "n_units": int(per_stack.loc[s, "sum"])}
                                for s in self.stacks()],
            "n_only_a": len(self.only_a), "n_only_b": len(self.only_b), "n_width_mismatch": len(self.width_mismatch),
            "only_a": self.only_a[:MAX_LISTED_SITES], "only_b": self.only_b[:MAX_LISTED_SITES],
            "width_mismatch": self.width_mismatch[:MAX_LISTED_SITES],
        }


#: Site matches of recent run pairs, keyed by the identity of both runs' cached layouts (a reopened store gives new
#: layouts, so a stale match is never used); each entry keeps its layouts alive so their ids cannot be reused.
MAX_CACHED_MATCHES = 8
_MATCHES: LRUCache = LRUCache(maxsize=MAX_CACHED_MATCHES)
_MATCHES_LOCK = threading.Lock()


def match_sites(reader: StoreReader, run_a: str, run_b: str) -> SiteMatch:
    """The sites of two runs matched by key and width (cached per pair of run layouts); QueryError naming `run_b` when
    they share none."""
    layout_a, layout_b = reader.layout(run_a), reader.layout(run_b)
    key = (id(layout_a), id(layout_b))
    with _MATCHES_LOCK:
        hit = _MATCHES.get(key)
        if hit is not None and hit[0] is layout_a and hit[1] is layout_b:
            return hit[2]
    match = _match_sites(layout_a, layout_b, run_a, run_b)
    with _MATCHES_LOCK:
        _MATCHES[key] = (layout_a, layout_b, match)
    return match


def _match_sites(layout_a: RunLayout, layout_b: RunLayout, run_a: str, run_b: str) -> SiteMatch:
    cols = ["site", "stack", "layer", "component", "width", "unit_offset"]
    sa = layout_a.sites[cols]
    sb = layout_b.sites[cols]
    both = sa.merge(sb, on="site", how="outer", suffixes=("_a", "_b"), indicator=True)
    same = (both["_merge"] == "both") & (both["width_a"] == both["width_b"])
    common = both[same].rename(columns={"stack_a": "stack", "layer_a": "layer", "component_a": "component", "width_a": "width"})
    common = common[["site", "stack", "layer", "component", "width", "unit_offset_a", "unit_offset_b"]]
    common = common.astype({"layer": np.int64, "width": np.int64, "unit_offset_a": np.int64, "unit_offset_b": np.int64})
    mismatch = both[(both["_merge"] == "both") & ~same]
    n_a = int((sa["unit_offset"] + sa["width"]).max()) if len(sa) else 0
    n_b = int((sb["unit_offset"] + sb["width"]).max()) if len(sb) else 0
    match = SiteMatch(
        run_a=run_a, run_b=run_b, common=common.sort_values("unit_offset_a").reset_index(drop=True),
        only_a=sorted(both.loc[both["_merge"] == "left_only", "site"]),
        only_b=sorted(both.loc[both["_merge"] == "right_only", "site"]),
        width_mismatch=[{"site": r.site, "width_a": int(r.width_a), "width_b": int(r.width_b)}
                        for r in mismatch.sort_values("site").itertuples()],
        n_units_a=n_a, n_units_b=n_b)
    if common.empty:
        raise QueryError(f"run_b: runs {run_a} and {run_b} share no unit site (same site key and width): "
                         f"{len(sa)} sites in A, {len(sb)} in B, {len(mismatch)} keys in both with other widths; "
                         "nothing can be compared")
    return match


def _check_step(reader: StoreReader, run_id: str, step: int | None, field: str) -> int:
    steps = [int(s) for s in reader.run(run_id)["steps"]]
    if step is None:
        return steps[0]
    if step not in steps:
        raise QueryError(f"{field}: run {run_id} has no step {step}; its steps are {_known(steps)}")
    return int(step)


def resolve_steps(reader: StoreReader, run_a: str, run_b: str, step_a: int | None, step_b: int | None) -> tuple[int, int]:
    """The steps compared: each checked against its run; by default A's first step, and B the same step when it has
    it (else B's first step)."""
    step_a = _check_step(reader, run_a, step_a, "step_a")
    if step_b is None:
        steps_b = [int(s) for s in reader.run(run_b)["steps"]]
        step_b = step_a if step_a in steps_b else steps_b[0]
    return step_a, _check_step(reader, run_b, step_b, "step_b")


def _key_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in MATCH_KEY:
        out[col] = out[col].astype(object).where(out[col].notna(), "")
    return out


def concept_pairs(reader: StoreReader, run_a: str, run_b: str, step_a: int, step_b: int, kind: str | None = None,
                  task: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Concepts of A at `step_a` matched to concepts of B at `step_b` by (kind, task, language, modality), optionally
    filtered by kind and task; returns (pairs, unmatched in A, unmatched in B)."""
    cols = ["concept_id", "kind", "role", "task", "step", "language", "modality", "positives", "negatives", "stacks", "description"]
    ca = reader.concepts(run_a, step=step_a)[cols]
    cb = reader.concepts(run_b, step=step_b)[cols]
    for col, value in (("kind", kind), ("task", task)):
        if value is not None:
            if not ((ca[col] == value).any() or (cb[col] == value).any()):
                known = sorted(set(ca[col].dropna()) | set(cb[col].dropna()))
                raise QueryError(f"{col}: neither run has {col} {value!r} at these steps; they have {_known(known)}")
            ca, cb = ca[ca[col] == value], cb[cb[col] == value]
    ka, kb = _key_frame(ca), _key_frame(cb)
    both = ka.merge(kb, on=list(MATCH_KEY), how="outer", suffixes=("_a", "_b"), indicator=True)
    pairs = both[both["_merge"] == "both"].sort_values("concept_id_a")
    rows = pd.DataFrame({
        "concept_id_a": pairs["concept_id_a"].astype(np.int64), "concept_id_b": pairs["concept_id_b"].astype(np.int64),
        "kind": pairs["kind"], "role": pairs["role_a"], "task": pairs["task"],
        "language": pairs["language"].replace("", None), "modality": pairs["modality"].replace("", None),
        "step_a": pairs["step_a"].astype(np.int64), "step_b": pairs["step_b"].astype(np.int64),
        "stacks": [[s for s in STACK_ORDER if s in set(a) & set(b)] for a, b in zip(pairs["stacks_a"], pairs["stacks_b"])],
        "description": pairs["description_a"],
    }).reset_index(drop=True)
    unmatched_a = ca[ca["concept_id"].isin(both.loc[both["_merge"] == "left_only", "concept_id_a"])]
    unmatched_b = cb[cb["concept_id"].isin(both.loc[both["_merge"] == "right_only", "concept_id_b"])]
    return rows, unmatched_a, unmatched_b


def _selective_counts(reader: StoreReader, run_id: str, concept_ids: Sequence[int], threshold: float,
                      ranges: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(concept_id, site index in the run's layout, count) of units with AP >= threshold, counted in DuckDB per block of
    units that never straddles a site."""
    layout = reader.layout(run_id)
    g = int(layout.bucket)
    cur = reader.cursor()
    try:
        rows = cur.execute(
            f"SELECT concept_id, unit_id // {g} AS bucket, count(*) AS n FROM unit_stats WHERE run_id = ? "
            f"AND concept_id IN ({','.join(str(int(c)) for c in concept_ids)}) AND {_ranges_sql(ranges)} AND ap >= ? "
            "GROUP BY ALL", [run_id, float(threshold)]).fetchnumpy()
    finally:
        cur.close()
    bucket = rows["bucket"].astype(np.int64)
    return rows["concept_id"].astype(np.int64), layout.unit_site[bucket * g].astype(np.int64), rows["n"].astype(np.int64)


def layer_differences(reader: StoreReader, match: SiteMatch, pairs: pd.DataFrame, stack: str, threshold: float) -> dict:
    """Units with AP >= threshold per (concept pair, layer) of one stack over the common sites, in A and in B, and B - A."""
    if stack not in match.stacks():
        raise QueryError(f"stack: runs {match.run_a} and {match.run_b} share no {stack} site; common stacks: "
                         f"{_known(match.stacks())}")
    sites = match.sites_of([stack])
    layers = sorted(int(v) for v in sites["layer"].unique())
    layer_pos = {v: i for i, v in enumerate(layers)}
    per_layer = sites.groupby("layer")["width"].sum()
    rows = pairs[[stack in s for s in pairs["stacks"]]].reset_index(drop=True)
    counts = {}
    for side in ("a", "b"):
        run_id = match.run_a if side == "a" else match.run_b
        layout_sites = reader.layout(run_id).sites
        # common site index in this run's layout -> column of the result (layer), -1 for sites not compared
        site_layer = np.full(len(layout_sites), -1, dtype=np.int64)
        idx = pd.Index(layout_sites["site"]).get_indexer(sites["site"])
        site_layer[idx] = [layer_pos[int(v)] for v in sites["layer"]]
        grid = np.zeros((len(rows), len(layers)), dtype=np.int64)
        if len(rows):
            ids = rows[f"concept_id_{side}"].to_numpy(np.int64)
            ranges = _merged_ranges(sites[f"unit_offset_{side}"].to_numpy(np.int64), sites["width"].to_numpy(np.int64))
            cid, site_idx, n = _selective_counts(reader, run_id, ids, threshold, ranges)
            row_of = pd.Index(ids).get_indexer(cid)
            col = site_layer[site_idx]
            keep = (row_of >= 0) & (col >= 0)
            np.add.at(grid, (row_of[keep], col[keep]), n[keep])
        counts[side] = grid
    return {
        "stack": stack, "threshold": float(threshold), "layers": layers,
        "units_per_layer": [int(per_layer.loc[v]) for v in layers],
        "concepts": [clean_record(r) for r in rows.to_dict("records")],
        "count_a": counts["a"].tolist(), "count_b": counts["b"].tolist(), "diff": (counts["b"] - counts["a"]).tolist(),
    }


def _run_brief(reader: StoreReader, run_id: str) -> dict:
    run = reader.run(run_id)
    return {k: run.get(k) for k in ("run_id", "name", "model_spec", "model_checksum", "mode", "corpus_source",
                                     "n_examples", "steps", "languages")}


def compare_runs(reader: StoreReader, run_a: str, run_b: str, step_a: int | None = None, step_b: int | None = None,
                 kind: str | None = None, task: str | None = None, stack: str | None = None,
                 threshold: float = 0.9) -> dict:
    """The run-level comparison: both runs, their common sites, the matched concepts at the chosen steps and the
    per-layer difference of selective-unit counts for one stack (default: the decoder, else the first common stack)."""
    match = match_sites(reader, run_a, run_b)
    step_a, step_b = resolve_steps(reader, run_a, run_b, step_a, step_b)
    pairs, unmatched_a, unmatched_b = concept_pairs(reader, run_a, run_b, step_a, step_b, kind, task)
    if stack is None:
        stack = "text_decoder" if "text_decoder" in match.stacks() else match.stacks()[0]
    brief = ["concept_id", "kind", "task", "language", "modality", "step", "description"]
    return {
        "run_a": run_a, "run_b": run_b, "step_a": step_a, "step_b": step_b, "kind": kind, "task": task,
        "runs": {"a": _run_brief(reader, run_a), "b": _run_brief(reader, run_b)},
        "same_model": reader.run(run_a)["model_checksum"] == reader.run(run_b)["model_checksum"],
        "sites": match.summary(),
        "matched_by": list(MATCH_KEY),
        "concepts": [clean_record(r) for r in pairs.to_dict("records")],
        "unmatched_a": [clean_record(r) for r in unmatched_a[brief].to_dict("records")],
        "unmatched_b": [clean_record(r) for r in unmatched_b[brief].to_dict("records")],
        "layers": layer_differences(reader, match, pairs, stack, threshold),
    }


def counterpart(reader: StoreReader, run_a: str, run_b: str, concept_id: int, step_b: int | None) -> tuple[dict, dict]:
    """Concept `concept_id` of run A and its match in run B at `step_b` (default: the same step when B has it);
    QueryError naming `concept_id` when B has no such concept."""
    ca = reader.concept(run_a, int(concept_id))
    _, step_b = resolve_steps(reader, run_a, run_b, int(ca["step"]), step_b)
    cb = _key_frame(reader.concepts(run_b, step=step_b))
    key = {col: ("" if ca.get(col) is None else ca[col]) for col in MATCH_KEY}
    hit = cb[np.logical_and.reduce([cb[col] == v for col, v in key.items()])]
    if hit.empty:
        words = ", ".join(f"{col} {ca.get(col)}" for col in MATCH_KEY)
        raise QueryError(f"concept_id: concept {concept_id} of run {run_a} ({words}) has no counterpart in run {run_b} "
                         f"at step {step_b} (concepts are matched by {', '.join(MATCH_KEY)})")
    return ca, reader.concept(run_b, int(hit["concept_id"].iloc[0]))


def _concept_aps(reader: StoreReader, run_id: str, concept_id: int, sites: pd.DataFrame, side: str,
                 n_units: int) -> np.ndarray:
    """A dense per-unit AP array of the run (NaN where the concept has no statistic), read over the given sites only."""
    ranges = _merged_ranges(sites[f"unit_offset_{side}"].to_numpy(np.int64), sites["width"].to_numpy(np.int64))
    cur = reader.cursor()
    try:
        rows = cur.execute(f"SELECT unit_id, ap FROM unit_stats WHERE run_id = ? AND concept_id = ? AND {_ranges_sql(ranges)}",
                           [run_id, int(concept_id)]).fetchnumpy()
    finally:
        cur.close()
    dense = np.full(n_units, np.nan, dtype=np.float64)
    dense[rows["unit_id"].astype(np.int64)] = rows["ap"].astype(np.float64)
    return dense


def compare_concept(reader: StoreReader, run_a: str, run_b: str, concept_id: int, step_b: int | None = None,
                    stack: str | None = None, k: int | None = None, n_moved: int = DEFAULT_MOVED,
                    max_points: int = DEFAULT_MAX_POINTS, match: SiteMatch | None = None) -> dict:
    """One concept's unit APs in run A vs run B over the common units of its stacks (or of `stack`): Spearman's rho,
    the top-k overlap against two random k-sets, the units whose AP moved most (units whose AP did not change are
    never listed), and the points of a scatter."""
    match = match or match_sites(reader, run_a, run_b)
    ca, cb = counterpart(reader, run_a, run_b, concept_id, step_b)
    stacks = [s for s in STACK_ORDER if s in set(ca["stacks"]) & set(cb["stacks"]) & set(match.stacks())]
    if stack is not None:
        if stack not in stacks:
            raise QueryError(f"stack: concept {ca['concept_id']} has statistics in both runs over common sites only for "
                             f"{_known(stacks)}, not {stack}")
        stacks = [stack]
    if not stacks:
        raise QueryError(f"concept_id: concept {ca['concept_id']} has no statistics on a stack both runs share")
    units = match.units(stacks)
    ap_a = _concept_aps(reader, run_a, ca["concept_id"], units["sites"], "a", match.n_units_a)[units["unit_id_a"]]
    ap_b = _concept_aps(reader, run_b, cb["concept_id"], units["sites"], "b", match.n_units_b)[units["unit_id_b"]]
    keep = np.isfinite(ap_a) & np.isfinite(ap_b)
    uid_a, uid_b, ap_a, ap_b = units["unit_id_a"][keep], units["unit_id_b"][keep], ap_a[keep], ap_b[keep]
    site_row, channel = units["site_row"][keep], units["channel"][keep]
    n = int(len(uid_a))
    if n == 0:
        raise NotFoundError(f"concept {ca['concept_id']} of run {run_a} and concept {cb['concept_id']} of run {run_b} "
                            "have no unit with an AP in both runs")
    ks = sorted(int(v) for v in ((reader.run(run_a).get("config") or {}).get("analysis") or {}).get("ks", []))
    if k is None:
        k = min(ks[0] if ks else 10, max(n // 2, 1))
    elif k > n:
        raise QueryError(f"k: {k} is larger than the {n} units compared")
    order_a, order_b = _ranking(ap_a), _ranking(ap_b)
    top_a, top_b = order_a[:k], order_b[:k]
    shared = np.intersect1d(top_a, top_b, assume_unique=True)
    count = int(len(shared))
    delta = ap_b - ap_a
    moved = _largest(np.abs(delta), uid_a, int(n_moved))
    rank_a = np.empty(n, dtype=np.int64)
    rank_a[order_a] = np.arange(1, n + 1)
    rank_b = np.empty(n, dtype=np.int64)
    rank_b[order_b] = np.arange(1, n + 1)
    sites = units["sites"]

    def records(pos: np.ndarray) -> list[dict]:
        rows = site_row[pos]
        columns = {
            "unit_id_a": uid_a[pos], "unit_id_b": uid_b[pos], "site": sites["site"].to_numpy()[rows], "channel": channel[pos],
            "stack": sites["stack"].to_numpy()[rows], "layer": sites["layer"].to_numpy(np.int64)[rows],
            "component": sites["component"].to_numpy()[rows], "ap_a": ap_a[pos], "ap_b": ap_b[pos], "delta": delta[pos],
            "rank_a": rank_a[pos], "rank_b": rank_b[pos]}
        return [dict(zip(columns, values)) for values in zip(*(v.tolist() for v in columns.values()))]

    flags = np.zeros(n, dtype=np.int64)
    flags[top_a] |= 1
    flags[top_b] |= 2
    if n <= max_points:
        shown = np.arange(n)
    else:
        sample = np.random.default_rng(SAMPLE_SEED).choice(n, size=max_points, replace=False)
        shown = np.union1d(sample, np.concatenate([top_a, top_b, moved]))
    cell_a = np.clip((ap_a * DENSITY_BINS).astype(np.int64), 0, DENSITY_BINS - 1)
    cell_b = np.clip((ap_b * DENSITY_BINS).astype(np.int64), 0, DENSITY_BINS - 1)
    density = np.bincount(cell_a * DENSITY_BINS + cell_b, minlength=DENSITY_BINS ** 2).reshape(DENSITY_BINS, DENSITY_BINS)
    edges = np.linspace(0.0, 1.0, DENSITY_BINS + 1)
    chance = {side: c["positives"] / max(c["positives"] + c["negatives"], 1) for side, c in (("a", ca), ("b", cb))}
    return {
        "run_a": run_a, "run_b": run_b, "concept_a": ca, "concept_b": cb, "stacks": stacks,
        "step_a": int(ca["step"]), "step_b": int(cb["step"]), "n_units": n,
        "n_without_ap": int((~keep).sum()), "identical_layout": match.identical,
        "chance_ap_a": chance["a"], "chance_ap_b": chance["b"],
        "spearman_rho": _rho_of_ranks(_average_ranks(ap_a, order_a), _average_ranks(ap_b, order_b)),
        "mean_ap_a": float(ap_a.mean()), "mean_ap_b": float(ap_b.mean()),
        "mean_abs_delta": float(np.abs(delta).mean()),
        "top_k": {"k": int(k), "count": count, "jaccard": count / (2 * k - count),
                  "expected_count": k * k / n, "expected_jaccard": expected_jaccard(n, k),
                  "units": records(shared[np.argsort(rank_a[shared], kind="stable")][:MAX_LISTED_UNITS])},
        "moved": records(moved),
        "points": {"unit_id_a": uid_a[shown].tolist(), "unit_id_b": uid_b[shown].tolist(),
                   "ap_a": ap_a[shown].tolist(), "ap_b": ap_b[shown].tolist(), "top": flags[shown].tolist(),
                   "sampled": bool(n > max_points)},
        "density": {"edges": edges.tolist(), "counts": density.astype(np.int64).tolist()},
    }
