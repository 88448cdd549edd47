"""Per-unit concept selectivity: average precision, forcing quantiles and top/bottom/random unit sets.

The AP engine reproduces ``sklearn.metrics.average_precision_score(labels, acts[u])`` for every unit
(ties included) without a Python loop per unit. It relies on the identity

    AP = (1/P) * sum over positives i of  #{positives j : x_j >= x_i} / #{examples j : x_j >= x_i},

which is sklearn's step-function sum over distinct thresholds (tied scores form one threshold) written
per positive. Each row is sorted once; every concept (label vector) then only touches its P positives.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

WORKSPACE_BYTES = 256 * 2**20
"""Approximate memory bound (all worker threads together) for the per-chunk scratch arrays."""

SORT_KEYS_BYTES = 8 * 2**20
"""Sort keys per chunk are kept near this size: larger chunks only add cache misses, not speed."""

_BYTES_PER_ELEMENT = 40
_LITTLE = sys.byteorder == "little"
_LO, _HI = (0, 1) if _LITTLE else (1, 0)
_SIGN32 = np.int32(-(2**31))


class ConceptError(ValueError):
    """Raised when a concept's labels or the activations cannot define a selectivity score."""


@dataclass(frozen=True, eq=False)
class UnitStats:
    """Per-unit selectivity statistics: arrays (n_units,) for one concept, (n_concepts, n_units) for several."""

    ap: np.ndarray
    on_p50: np.ndarray
    on_p90: np.ndarray
    off_mean: np.ndarray
    off_p50: np.ndarray


def default_threads() -> int:
    """Worker threads used when none are requested: the CPUs this process may run on, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def default_chunk_units(n_examples: int, n_threads: int = 1) -> int:
    """Units per chunk: cache-sized sort keys, and all threads' scratch arrays within ``WORKSPACE_BYTES``."""
    n = max(1, n_examples)
    by_memory = WORKSPACE_BYTES // (n * _BYTES_PER_ELEMENT * max(1, n_threads))
    return max(1, min(by_memory, SORT_KEYS_BYTES // (8 * n)))


def _check_acts(acts: np.ndarray) -> np.ndarray:
    if not isinstance(acts, np.ndarray):
        acts = np.asarray(acts)
    if acts.ndim != 2:
        raise ValueError(f"acts must be 2-D (n_units, n_examples); got shape {acts.shape}")
    if acts.dtype.kind not in "fiub" or acts.dtype.itemsize > 8:
        raise TypeError(f"acts must hold real numbers (float16/32/64 or integers); got dtype {acts.dtype}")
    return acts


def _check_labels(labels: np.ndarray, n_examples: int) -> tuple[np.ndarray, bool]:
    """Return labels as a (n_concepts, n_examples) bool array and whether the input was 1-D."""
    lab = np.asarray(labels)
    if lab.ndim not in (1, 2):
        raise ValueError(f"labels must be 1-D (n_examples,) or 2-D (n_concepts, n_examples); got shape {lab.shape}")
    if lab.shape[-1] != n_examples:
        raise ValueError(f"labels have {lab.shape[-1]} examples but acts have {n_examples}")
    if lab.dtype != np.bool_:
        if lab.dtype.kind not in "iuf" or not np.isin(lab, (0, 1)).all():
            raise ConceptError(f"labels must be boolean (or 0/1); got dtype {lab.dtype} with other values")
        lab = lab.astype(bool)
    one_d = lab.ndim == 1
    lab2 = lab.reshape(1, -1) if one_d else lab
    n_pos = lab2.sum(axis=1)
    for c in range(lab2.shape[0]):
        p, q = int(n_pos[c]), n_examples - int(n_pos[c])
        if p == 0 or q == 0:
            where = "" if one_d else f"concept {c}: "
            raise ConceptError(
                f"{where}labels have {p} positives and {q} negatives; "
                "average precision needs at least one of each"
            )
    return np.ascontiguousarray(lab2), one_d


def _quantile_plan(count: int, q: float) -> tuple[int, int, float]:
    """Neighbouring order statistics and weight of np.percentile's default ("linear") method."""
    virtual = (count - 1) * q
    prev = int(np.floor(virtual))
    if virtual >= count - 1:
        return count - 1, count - 1, virtual - prev
    return prev, prev + 1, virtual - prev


def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """numpy's interpolation formula (switching end point at t >= 0.5), for identical rounding."""
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


def _decode_f32(hi: np.ndarray) -> np.ndarray:
    """Invert the order-preserving float32 -> uint32 key transform; returns float64."""
    h = np.asarray(hi, dtype=np.uint32)
    neg = (h >> np.uint32(31)) == 0
    bits = np.where(neg, ~h, h ^ np.uint32(0x80000000))
    return bits.view(np.float32).astype(np.float64)


class _Workspace:
    """Scratch arrays reused across chunks by one thread (fresh large allocations are slow to touch)."""

    def __init__(self, chunk: int, n: int) -> None:
        self.chunk, self.n = chunk, n
        self.keys = np.empty((chunk, n), np.uint64)
        self.inv = np.empty((chunk, n), np.int32)
        self.buf8 = np.empty(chunk * n, np.float64)
        self.seq = np.ascontiguousarray(np.broadcast_to(np.arange(n, dtype=np.int32), (chunk, n)))
        self.col = np.arange(n, dtype=np.uint64)
        self.rowoff = np.arange(chunk, dtype=np.uint64) * np.uint64(n)

    def int32_scratch(self, rows: int) -> np.ndarray:
        return self.buf8.view(np.int32)[: rows * self.n].reshape(rows, self.n)

    def intp_scratch(self, rows: int) -> np.ndarray:
        return self.buf8.view(np.intp)[: rows * self.n]

    def float64(self, rows: int) -> np.ndarray:
        return self.buf8[: rows * self.n].reshape(rows, self.n)


class _SortedChunk:
    """Row-wise ascending order of one chunk of units, with tie structure and sorted-value access."""

    def __init__(self, x: np.ndarray, ws: _Workspace) -> None:
        c, n = x.shape
        self.rows, self.n = c, n
        self.inv = ws.inv[:c]
        if x.dtype.kind == "f" and (x.dtype.itemsize <= 4 or self._fits_f32(x)):
            self._sort_f32(x, ws)
        else:
            self._sort_f64(x, ws)
        eq = self._sorted_equal_neighbours()
        self.tie_rows = np.flatnonzero(eq.any(axis=1))
        self.group_start: np.ndarray | None = None
        if self.tie_rows.size:
            start = np.zeros((self.tie_rows.size, n), np.int32)
            start[:, 1:] = np.where(eq[self.tie_rows], 0, np.arange(1, n, dtype=np.int32))
            self.group_start = np.maximum.accumulate(start, axis=1)

    def _fits_f32(self, x: np.ndarray) -> bool:
        """Whether float64 values are exactly float32 (e.g. upcast activations): then the fast path applies."""
        x32 = self.inv.view(np.float32)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            np.copyto(x32, x, casting="same_kind")
            return bool(np.equal(x32, x).all())

    def _sort_f32(self, x: np.ndarray, ws: _Workspace) -> None:
        """Pack (order-preserving value bits, flat index) into uint64 keys and sort them (no argsort)."""
        c, n = x.shape
        b, m = self.inv, ws.int32_scratch(c)
        np.add(x, np.float32(0.0), out=b.view(np.float32), casting="same_kind")
        np.right_shift(b, 31, out=m)
        np.bitwise_or(m, _SIGN32, out=m)
        np.bitwise_xor(b, m, out=b)
        keys = ws.keys[:c]
        np.copyto(keys, b.view(np.uint32))
        np.left_shift(keys, np.uint64(32), out=keys)
        np.add(keys, ws.rowoff[:c, None], out=keys)
        np.add(keys, ws.col, out=keys)
        keys.sort(axis=1)
        halves = keys.view(np.uint32).reshape(c, n, 2)
        self._hi = halves[:, :, _HI]
        self._s = None
        flat = ws.intp_scratch(c)
        np.copyto(flat, halves[:, :, _LO].reshape(-1))
        self.inv.reshape(-1)[flat] = ws.seq[:c].reshape(-1)

    def _sort_f64(self, x: np.ndarray, ws: _Workspace) -> None:
        c, n = x.shape
        xf = np.asarray(x, dtype=np.float64)
        order = np.argsort(xf, axis=1)
        self._s = np.take_along_axis(xf, order, axis=1)
        self._hi = None
        order += (np.arange(c, dtype=np.intp) * n)[:, None]
        self.inv.reshape(-1)[order.reshape(-1)] = ws.seq[:c].reshape(-1)

    def _sorted_equal_neighbours(self) -> np.ndarray:
        s = self._hi if self._s is None else self._s
        return s[:, 1:] == s[:, :-1]

    def values_at(self, pos: np.ndarray) -> np.ndarray:
        """float64 sorted values at positions ``pos`` (shape (rows,) or (rows, m)) of each row."""
        r = np.arange(self.rows)
        r = r if pos.ndim == 1 else r[:, None]
        if self._s is not None:
            return self._s[r, pos]
        return _decode_f32(self._hi[r, pos])

    def first_bad_row(self) -> int:
        """Index of the first row holding NaN or +-inf (they sort to the ends), or -1."""
        ends = np.stack([self.values_at(np.zeros(self.rows, np.intp)),
                         self.values_at(np.full(self.rows, self.n - 1, np.intp))], axis=1)
        bad = np.flatnonzero(~np.isfinite(ends).all(axis=1))
        return int(bad[0]) if bad.size else -1

    def concept(self, pos_idx: np.ndarray, want_ap: bool, want_q: bool) -> dict[str, np.ndarray]:
        """AP and/or quantiles of every row for one concept given the example indices of its positives."""
        n, P = self.n, pos_idx.size
        p = np.take(self.inv, pos_idx, axis=1)
        p.sort(axis=1)
        out: dict[str, np.ndarray] = {}
        if want_ap:
            num = (P - np.arange(P)).astype(np.float64)
            den = np.subtract(n, p, dtype=np.float64)
            np.divide(num, den, out=den)
            ap = den.sum(axis=1) / P
            if self.tie_rows.size:
                g = np.take_along_axis(self.group_start, p[self.tie_rows], axis=1)
                first = np.zeros(g.shape, np.int32)
                first[:, 1:] = np.where(g[:, 1:] != g[:, :-1], np.arange(1, P, dtype=np.int32), 0)
                np.maximum.accumulate(first, axis=1, out=first)
                ap[self.tie_rows] = ((P - first) / (n - g).astype(np.float64)).sum(axis=1) / P
            out["ap"] = ap
        if want_q:
            for name, q in (("on_p50", 0.5), ("on_p90", 0.9)):
                lo, hi, t = _quantile_plan(P, q)
                out[name] = _lerp(self.values_at(p[:, lo]), self.values_at(p[:, hi]), t)
            neg_before = p - np.arange(P, dtype=np.int32)
            lo, hi, t = _quantile_plan(n - P, 0.5)
            at = [k + (neg_before <= k).sum(axis=1) for k in (lo, hi)]
            out["off_p50"] = _lerp(self.values_at(at[0]), self.values_at(at[1]), t)
        return out


def _run(
    acts: np.ndarray,
    labels: np.ndarray,
    chunk_units: int | None,
    n_threads: int | None,
    want_ap: bool,
    want_q: bool,
) -> tuple[dict[str, np.ndarray], bool]:
    acts = _check_acts(acts)
    n_units, n = acts.shape
    lab, one_d = _check_labels(labels, n)
    n_concepts = lab.shape[0]
    threads = default_threads() if n_threads is None else int(n_threads)
    if threads < 1:
        raise ValueError(f"n_threads must be >= 1; got {n_threads}")
    chunk = default_chunk_units(n, threads) if chunk_units is None else int(chunk_units)
    if chunk < 1:
        raise ValueError(f"chunk_units must be >= 1; got {chunk_units}")
    chunk = min(chunk, max(1, n_units))
    names = (["ap"] if want_ap else []) + (["on_p50", "on_p90", "off_mean", "off_p50"] if want_q else [])
    res = {k: np.empty((n_concepts, n_units), np.float64) for k in names}
    pos_lists = [np.flatnonzero(row) for row in lab]
    neg = (~lab).astype(np.float64)
    n_neg = neg.sum(axis=1)
    starts = list(range(0, n_units, chunk))
    threads = max(1, min(threads, len(starts)))

    def worker(my_starts: list[int]) -> int:
        ws = _Workspace(chunk, n)
        for s in my_starts:
            e = min(s + chunk, n_units)
            x = acts[s:e]
            sc = _SortedChunk(x, ws)
            bad = sc.first_bad_row()
            if bad >= 0:
                return s + bad
            for c, pos_idx in enumerate(pos_lists):
                for k, v in sc.concept(pos_idx, want_ap, want_q).items():
                    res[k][c, s:e] = v
            if want_q:
                xf = ws.float64(e - s)
                np.copyto(xf, x, casting="unsafe")
                res["off_mean"][:, s:e] = np.einsum("kj,ij->ki", neg, xf) / n_neg[:, None]
        return -1

    plan = [starts[i::threads] for i in range(threads)]
    if threads == 1:
        bad_units = [worker(plan[0])]
    else:
        with ThreadPoolExecutor(threads) as ex:
            bad_units = list(ex.map(worker, plan))
    bad_units = [b for b in bad_units if b >= 0]
    if bad_units:
        u = min(bad_units)
        raise ConceptError(f"acts row {u} (unit index {u}) contains NaN or infinite values")
    return res, one_d


def _shape(res: dict[str, np.ndarray], one_d: bool) -> dict[str, np.ndarray]:
    return {k: (v[0] if one_d else v) for k, v in res.items()}


def average_precision(
    acts: np.ndarray,
    labels: np.ndarray,
    chunk_units: int | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """sklearn's ``average_precision_score(labels, acts[u])`` for every unit u, vectorised and chunked.

    acts: (n_units, n_examples) real values. float16/float32 chunks, and float64 chunks whose values are all
    exactly float32, take a fast path (packed 64-bit value+index keys, one sort); others are argsorted as
    float64. Both give identical results. labels: (n_examples,) bool, or (n_concepts, n_examples) to
    score several concepts against one sort. Returns float64 (n_units,) or (n_concepts, n_units).
    A constant unit gets AP = positive rate (one threshold), as in sklearn.
    """
    res, one_d = _run(acts, labels, chunk_units, n_threads, want_ap=True, want_q=False)
    return _shape(res, one_d)["ap"]


def concept_quantiles(
    acts: np.ndarray,
    labels: np.ndarray,
    chunk_units: int | None = None,
    n_threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Forcing values per unit: on_p50/on_p90 over positives, off_mean/off_p50 over negatives.

    Percentiles follow ``np.percentile``'s default linear method, evaluated in float64.
    """
    res, one_d = _run(acts, labels, chunk_units, n_threads, want_ap=False, want_q=True)
    return _shape(res, one_d)


def unit_stats(
    acts: np.ndarray,
    labels: np.ndarray,
    chunk_units: int | None = None,
    n_threads: int | None = None,
) -> UnitStats:
    """AP and forcing quantiles in one pass over unit chunks (one sort per chunk serves all concepts)."""
    res, one_d = _run(acts, labels, chunk_units, n_threads, want_ap=True, want_q=True)
    return UnitStats(**_shape(res, one_d))


SELECTION_KINDS = ("top", "bottom", "both", "random")


@dataclass(frozen=True, eq=False)
class Selection:
    """A set of units chosen from one scope.

    ``units`` are unit ids. ``ranks`` (1-based) are: for top, 1 = highest AP; for bottom, 1 = lowest AP;
    for both, the top part (ranks 1..k, highest AP first) followed by the bottom part (ranks 1..k, lowest
    AP first); for random, the draw order. ``matches`` names the kind a random set controls for ("top":
    size k, "both": size 2k) and is "" otherwise.
    """

    kind: str
    scope: str
    k_requested: int
    units: np.ndarray
    ranks: np.ndarray
    matches: str = ""
    side: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    @property
    def size(self) -> int:
        """Number of units in the set."""
        return int(self.units.size)


#: Random-set seeds stay below 2**53, so an InterventionSpec carrying one survives JSON in a browser (share links).
SEED_BITS = 53


def selection_seed(seed: int, seed_key: str, scope: str, k: int, matches: str) -> int:
    """Deterministic seed of a random set (stable across processes, unlike hash()); the batch experiments put the
    same seed in their random-control specs, so the set they force is the stored one."""
    text = "\x1f".join([str(int(seed)), seed_key, scope, str(int(k)), matches])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & ((1 << SEED_BITS) - 1)


def build_selections(
    ap: np.ndarray,
    unit_ids: np.ndarray,
    scopes: dict[str, np.ndarray],
    ks: Sequence[int] = (1000, 2000),
    seed: int = 0,
    seed_key: str = "",
) -> list[Selection]:
    """Top-k, bottom-k, both and size-matched random unit sets for every scope and k.

    One sort per scope orders units by AP descending, ties by lower unit id first; top-k is its head and
    bottom-k its reversed tail (so bottom ties go higher unit id first and top and bottom never share a unit,
    even with ties at the median). If k > scope_size // 2 the effective k is
    scope_size // 2 (top and bottom never overlap); ``k_requested`` keeps the asked-for k. Scopes with fewer
    than 2 units are skipped. ``side`` is +1 for top units, -1 for bottom units, 0 for random units.
    Random sets are drawn without replacement from the scope, seeded from (seed, seed_key, scope, k, matches).
    """
    ap = np.asarray(ap, dtype=np.float64)
    ids = np.asarray(unit_ids)
    if ap.ndim != 1:
        raise ValueError(f"ap must be 1-D (n_units,); got shape {ap.shape}")
    if ids.shape != ap.shape or ids.dtype.kind not in "iu":
        raise ValueError(f"unit_ids must be integers of shape {ap.shape}; got {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != ids.size:
        raise ValueError("unit_ids contain duplicates")
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"every k must be a positive integer; got {k!r}")
    out: list[Selection] = []
    for scope, mask in scopes.items():
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != ap.shape:
            raise ValueError(f"scope {scope!r}: mask must be bool of shape {ap.shape}; got {m.dtype} {m.shape}")
        idx = np.flatnonzero(m)
        if idx.size < 2:
            continue
        a, u = ap[idx], ids[idx]
        if not np.isfinite(a).all():
            bad = int(u[np.flatnonzero(~np.isfinite(a))[0]])
            raise ValueError(f"scope {scope!r}: AP of unit id {bad} is not finite")
        top_order = np.lexsort((u, -a))
        bottom_order = top_order[::-1]
        for k_req in ks:
            k = min(int(k_req), idx.size // 2)
            top, bottom = u[top_order[:k]], u[bottom_order[:k]]
            r = np.arange(1, k + 1, dtype=np.int32)
            plus, minus = np.ones(k, np.int8), -np.ones(k, np.int8)
            out.append(Selection("top", scope, int(k_req), top, r, side=plus))
            out.append(Selection("bottom", scope, int(k_req), bottom, r.copy(), side=minus))
            out.append(Selection("both", scope, int(k_req), np.concatenate([top, bottom]),
                                 np.concatenate([r, r]), side=np.concatenate([plus, minus])))
            for matches, size in (("top", k), ("both", 2 * k)):
                rng = np.random.default_rng(selection_seed(seed, seed_key, scope, int(k_req), matches))
                drawn = u[rng.choice(idx.size, size=size, replace=False)]
                out.append(Selection("random", scope, int(k_req), drawn,
                                     np.arange(1, size + 1, dtype=np.int32), matches=matches,
                                     side=np.zeros(size, np.int8)))
    return out
