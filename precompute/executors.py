"""Where recording shards and statistics chunks run: in this process, in a local process pool, or on a Ray cluster.

A shard job is pure: (model spec, run config, items) -> (arrays, meta). Workers load the model once and send
results back; only the driver writes shards, so recording workers need no shared filesystem. A statistics job reads
one unit chunk from the shards at the work folder's location and returns per-unit results for the driver to merge.
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.ray_executor import RayExecutor
from precompute.shards import ShardJob, ShardResult, init_worker, record_shard, run_job

J = TypeVar("J")
R = TypeVar("R")


class LocalExecutor:
    """Run shards in this process (`workers=1`) or in a pool of processes that each load the model once."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def map(self, bundle: ModelBundle, registry: SiteRegistry, cfg, jobs: Sequence[ShardJob]) -> Iterator[ShardResult]:
        if self.workers == 1 or len(jobs) <= 1:
            for key, items in jobs:
                yield record_shard(bundle, registry, cfg, key, items)
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(self.workers, initializer=init_worker, initargs=(cfg.model, cfg.device, cfg, bundle.checksum)) as pool:
            yield from pool.imap_unordered(run_job, jobs)

    def map_chunks(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[R]:
        """Statistics jobs one after the other in this process (each already uses the CPUs' threads), in order."""
        for job in jobs:
            yield fn(job)


def make_executor(name: str, workers: int = 1):
    """`local` (default) or `ray`."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers)
    raise ValueError(f"unknown executor {name!r}; choose 'local' or 'ray'")
