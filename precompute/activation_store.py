"""Recorded pooled activations, written once as unit-major shards at any location fsspec can write.

Layout under a run's work folder (a local path or a URL: file://, memory://, s3://, ...):
  shards/{task}/{lang}/{start:06d}-{stop:06d}/   one shard: a contiguous range of one task's items of one label language
      {encoder_stack}.npy        [units, encoder items]  float32 or float16 (`activation_dtype`)
      text_decoder.step{s}.npy   [units, items]
      meta.json                  written last, so it marks a finished shard: item indices, encoder items, generations
  phases/{phase}.json            the phase's statistics are in; its arrays may be gone (`keep_activations: false`)
An en->X task feeds the same English input to every target language, so its encoder values are stored once, in the
shard of the item that first uses that input (`encoder_items`); `encoder_source` maps every item to that item.
Statistics read a unit range of a task (`unit_chunk`): one contiguous byte range per shard, no unit-major copy.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

ACTIVATION_DTYPES = {"float32": np.float32, "float16": np.float16}
_F16_MAX = float(np.finfo(np.float16).max)


class WorkDir:
    """A folder at an fsspec location (local path or URL); pickles as its URL, so Ray tasks can open it too."""

    def __init__(self, url: str | Path):
        self.url = str(url)
        try:
            self.fs, self.path = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:
            raise ValueError(f"work_dir {self.url!r}: no fsspec driver for this location is installed ({exc})") from exc

    def __reduce__(self):
        return WorkDir, (self.url,)

    def __repr__(self) -> str:
        return f"WorkDir({self.url!r})"

    @property
    def local(self) -> Path | None:
        """The folder as a local path, or None on a remote filesystem."""
        return Path(self.path) if isinstance(self.fs, LocalFileSystem) else None

    def child(self, *parts: str) -> WorkDir:
        return WorkDir(self.url.rstrip("/") + "/" + "/".join(parts))

    def join(self, *parts: str | PurePosixPath) -> str:
        return "/".join([self.path.rstrip("/"), *(str(p) for p in parts)])


def open_work_dir(location: str | Path | WorkDir) -> WorkDir:
    return location if isinstance(location, WorkDir) else WorkDir(location)


@dataclass(frozen=True)
class ShardKey:
    """A shard: a contiguous range of one task's items of one label language."""

    task: str
    lang: str
    start: int
    stop: int

    @property
    def rel(self) -> PurePosixPath:
        return PurePosixPath("shards") / self.task / self.lang / f"{self.start:06d}-{self.stop:06d}"


def decoder_name(step: int) -> str:
    return f"text_decoder.step{step}"


def shard_done(root: str | Path | WorkDir, key: ShardKey) -> bool:
    """Whether the shard is finished in this layout (a shard an older engine wrote item-major is recorded again)."""
    work = open_work_dir(root)
    path = work.join(key.rel, "meta.json")
    return work.fs.exists(path) and "arrays" in json.loads(work.fs.cat_file(path))


def storage_array(arr: np.ndarray, dtype: str) -> np.ndarray:
    """[items, units] recorded values as the stored [units, items] array: float16 saturates at its largest finite value
    (an activation beyond it would read back as inf, and the statistics would drop the unit as unrecorded)."""
    out = np.ascontiguousarray(np.asarray(arr, dtype=np.float32).T)
    if dtype == "float16":
        out = np.clip(out, -_F16_MAX, _F16_MAX).astype(np.float16)
    return out


def write_shard(root: str | Path | WorkDir, key: ShardKey, arrays: dict[str, np.ndarray], meta: dict,
                dtype: str = "float32") -> None:
    """Write a shard's arrays ([items, units] as recorded; stored unit-major in `dtype`), then its meta.json.

    meta.json is written last (renamed into place on a local disk; one object put elsewhere), so a shard whose meta
    exists is complete and a killed write is simply redone. It holds each array's shape, dtype and data offset, so a
    remote reader fetches a unit range with one ranged GET and no header read.
    """
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"activation dtype {dtype!r}; choose one of {', '.join(ACTIVATION_DTYPES)}")
    work = open_work_dir(root)
    work.fs.makedirs(work.join(key.rel), exist_ok=True)
    layout = {}
    for name, arr in arrays.items():
        stored = storage_array(arr, dtype)
        buf = io.BytesIO()
        np.save(buf, stored)
        work.fs.pipe_file(work.join(key.rel, f"{name}.npy"), buf.getbuffer())
        layout[name] = {"shape": list(stored.shape), "dtype": stored.dtype.str, "offset": buf.tell() - stored.nbytes}
    text = json.dumps({**meta, "arrays": layout})
    if work.local is not None:
        tmp = work.local / key.rel / ".meta.json.tmp"
        tmp.write_text(text)
        tmp.replace(work.local / key.rel / "meta.json")
    else:
        work.fs.pipe_file(work.join(key.rel, "meta.json"), text.encode())


def read_shard_meta(root: str | Path | WorkDir, key: ShardKey) -> dict:
    work = open_work_dir(root)
    return json.loads(work.fs.cat_file(work.join(key.rel, "meta.json")))


def encoder_sources(items: Sequence) -> dict[int, int]:
    """Item index -> index of the first item with the same input example (the one whose encoder row is stored).

    Only an en->X task repeats inputs (the English example, once per target language); elsewhere every item is its
    own source.
    """
    first: dict[str, int] = {}
    return {it.index: first.setdefault(it.example.id, it.index) for it in items}


def dedupe_encoder(arrays: dict[str, np.ndarray], meta: dict, encoder: str, sources: dict[int, int]) -> tuple[dict, dict]:
    """Keep a shard's encoder rows only for items that are their own source; meta says which and where the rest are."""
    items = meta["items"]
    keep = [i for i, idx in enumerate(items) if sources[idx] == idx]
    arrays = {**arrays, encoder: arrays[encoder][keep]}
    meta = {**meta, "encoder": encoder, "encoder_items": [items[i] for i in keep],
            "encoder_source": [sources[idx] for idx in items]}
    return arrays, meta


@dataclass
class _Shard:
    folder: str
    items: np.ndarray
    encoder: str | None
    encoder_items: np.ndarray
    arrays: dict


class TaskActivations:
    """One task's recorded shards, read as unit-major chunks [units, items] over all of the task's items.

    On a local disk each shard array is memory-mapped; elsewhere a chunk is one ranged read per shard, all of a chunk's
    reads issued together (`cat_ranges`: concurrent on s3/gcs).
    """

    def __init__(self, root: str | Path | WorkDir, task: str):
        self.work = open_work_dir(root)
        self.task = task
        metas = sorted(self.work.fs.glob(self.work.join("shards", task, "*", "*", "meta.json")))
        if not metas:
            raise FileNotFoundError(f"no recorded shards of task {task} under {self.work.url}; run the recording first")
        self.shards: list[_Shard] = []
        parsed = [json.loads(raw) for raw in self.work.fs.cat_ranges(metas, [None] * len(metas), [None] * len(metas))]
        for path, meta in zip(metas, parsed):
            self.shards.append(_Shard(path.rsplit("/", 1)[0], np.asarray(meta["items"], dtype=np.int64),
                                      meta.get("encoder"), np.asarray(meta.get("encoder_items", meta["items"]), dtype=np.int64),
                                      meta.get("arrays", {})))
        self.n_items = int(sum(s.items.size for s in self.shards))
        self.encoder_source = np.arange(self.n_items)
        for meta in parsed:
            if "encoder_source" in meta:
                self.encoder_source[meta["items"]] = meta["encoder_source"]

    def _layout(self, shard: _Shard, name: str) -> tuple[tuple, np.dtype, int]:
        """(shape, dtype, data offset) of a shard array, from the shard's meta."""
        if name not in shard.arrays:
            raise FileNotFoundError(f"{shard.folder} holds no {name} array" + (
                "" if shard.arrays else " in this layout (an older engine wrote it item-major; record it again)"))
        info = shard.arrays[name]
        return tuple(info["shape"]), np.dtype(info["dtype"]), int(info["offset"])

    def n_units(self, name: str) -> int:
        return int(self._layout(self.shards[0], name)[0][0])

    def _blocks(self, shards: list[_Shard], name: str, start: int, stop: int) -> list[np.ndarray]:
        paths = [f"{s.folder}/{name}.npy" for s in shards]
        try:
            if self.work.local is not None:
                return [np.load(p, mmap_mode="r")[start:stop] for p in paths]
            layouts = [self._layout(s, name) for s in shards]
            starts = [off + start * shape[1] * dtype.itemsize for shape, dtype, off in layouts]
            ends = [off + stop * shape[1] * dtype.itemsize for shape, dtype, off in layouts]
            raws = self.work.fs.cat_ranges(paths, starts, ends)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc.filename or paths[0]}: this run's activations were deleted after their "
                                    "statistics were written (set keep_activations: true to keep them)") from exc
        return [np.frombuffer(raw, dtype=dtype).reshape(stop - start, shape[1])
                for raw, (shape, dtype, _) in zip(raws, layouts)]

    def chunk(self, name: str, start: int, stop: int) -> np.ndarray:
        """Units [start, stop) of array `name` over all items: float32 [stop - start, items]."""
        out = np.empty((stop - start, self.n_items), np.float32)
        encoder_array = any(s.encoder == name for s in self.shards)
        columns = [s.encoder_items if s.encoder == name else s.items for s in self.shards]
        reading = [(s, cols) for s, cols in zip(self.shards, columns) if cols.size]
        for (_, cols), block in zip(reading, self._blocks([s for s, _ in reading], name, start, stop)):
            out[:, cols] = block
        if encoder_array and not np.array_equal(self.encoder_source, np.arange(self.n_items)):
            out = out[:, self.encoder_source]
        return out


def unit_chunk(root: str | Path | WorkDir, task: str, name: str, start: int, stop: int) -> np.ndarray:
    """Units [start, stop) of one task's stack/step array over all its items, assembled from the shards [units, items]."""
    return TaskActivations(root, task).chunk(name, start, stop)


def load_acts(root: str | Path | WorkDir, task: str, name: str) -> np.ndarray:
    """All units of one task's stack/step array [units, items] (float32, in memory): for tests and small runs."""
    acts = TaskActivations(root, task)
    return acts.chunk(name, 0, acts.n_units(name))


def delete_activations(root: str | Path | WorkDir, tasks: Sequence[str]) -> int:
    """Delete the recorded arrays of `tasks` (their meta.json stay: the store's item rows come from them); bytes freed."""
    work = open_work_dir(root)
    files = [f for task in tasks for f in work.fs.glob(work.join("shards", task, "*", "*", "*.npy"))]
    freed = sum(work.fs.size(f) for f in files)
    if files:
        work.fs.rm(files)
    return freed


def activation_bytes(root: str | Path | WorkDir) -> int:
    """Bytes of recorded arrays now under the work folder."""
    work = open_work_dir(root)
    return sum(work.fs.size(f) for f in work.fs.glob(work.join("shards", "*", "*", "*", "*.npy")))


def phase_done(root: str | Path | WorkDir, phase: str) -> bool:
    work = open_work_dir(root)
    return work.fs.exists(work.join("phases", f"{phase}.json"))


def mark_phase_done(root: str | Path | WorkDir, phase: str, info: dict) -> None:
    """Record that a phase's statistics are written (before its arrays are deleted, so a resumed run never needs them)."""
    work = open_work_dir(root)
    work.fs.makedirs(work.join("phases"), exist_ok=True)
    work.fs.pipe_file(work.join("phases", f"{phase}.json"), json.dumps(info).encode())
