"""On-disk pooled activations: atomic per-shard files while recording, unit-major arrays for the statistics.

Layout under a run's work folder:
  shards/{task}/{lang}/{start:06d}-{stop:06d}/   one finished shard (renamed into place atomically)
      {encoder_stack}.npy        [items, units]  float32
      text_decoder.step{s}.npy   [items, units]  float32
      meta.json                  item indices, generated ids, prefix lengths
  acts/{task}/{stack}.npy                     unit-major [units, items] float32 (encoders: step-independent)
  acts/{task}/text_decoder.step{s}.npy        unit-major [units, items] float32
Unit-major files make one unit's values over all items one contiguous read (np.load(..., mmap_mode="r")).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ShardKey:
    """A shard: a contiguous range of one task's items of one label language."""

    task: str
    lang: str
    start: int
    stop: int

    @property
    def rel(self) -> Path:
        return Path("shards") / self.task / self.lang / f"{self.start:06d}-{self.stop:06d}"


def decoder_name(step: int) -> str:
    return f"text_decoder.step{step}"


def shard_done(root: Path, key: ShardKey) -> bool:
    return (root / key.rel / "meta.json").is_file()


def write_shard(root: Path, key: ShardKey, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write a shard's arrays and meta into a temporary folder, then rename it into place (all or nothing)."""
    final = root / key.rel
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float32))
        (tmp / "meta.json").write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_shard_meta(root: Path, key: ShardKey) -> dict:
    return json.loads((root / key.rel / "meta.json").read_text())


def merge_task(root: Path, task: str, shards: Sequence[ShardKey], names: Sequence[str], n_items: int) -> None:
    """Build the unit-major arrays of one task from its shards (each written to a temp file, then renamed)."""
    out_dir = root / "acts" / task
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        first = np.load(root / shards[0].rel / f"{name}.npy", mmap_mode="r")
        n_units = first.shape[1]
        tmp = out_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_units, n_items))
        for key in shards:
            part = np.load(root / key.rel / f"{name}.npy", mmap_mode="r")
            idx = np.asarray(read_shard_meta(root, key)["items"], dtype=np.int64)
            out[:, idx] = part.T
        out.flush()
        del out
        os.replace(tmp, out_dir / f"{name}.npy")


def load_acts(root: Path, task: str, name: str) -> np.ndarray:
    """Unit-major pooled activations [units, items] of one task and stack/step (memory-mapped)."""
    path = root / "acts" / task / f"{name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded activations {path}; run the recording first")
    return np.load(path, mmap_mode="r")
