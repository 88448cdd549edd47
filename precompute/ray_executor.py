"""Recording shards and statistics chunks on Ray: one actor per GPU (or CPU slot) records, Ray tasks do statistics.

Point it at a cluster with `RAY_ADDRESS` (e.g. `ray://head:10001`) or run `ray start --head` on the driver's machine;
without either, a local Ray instance is started. Recording jobs carry their decoded audio and results come back
through Ray's object store, so recording workers need neither the corpus files nor the work folder; the driver writes
every shard to `work_dir` (any fsspec location every node can read: a shared path, NFS, s3://...). Statistics run as
Ray tasks over unit chunks that read the shards from there, so no machine holds all activations; the driver merges
the per-chunk results in job order, so the store equals the local executor's, bit for bit.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.shards import WORKER, ShardJob, ShardResult, init_worker, record_shard
from neuron_atlas.engine.tasks import TASKS


class _ShardWorker:
    """A Ray actor holding one loaded model."""

    def __init__(self, model_spec: str, device: str, cfg, checksum: str):
        init_worker(model_spec, device, cfg, checksum)

    def record(self, job: ShardJob, audio: dict[str, np.ndarray] | None) -> ShardResult:
        key, items = job
        return record_shard(WORKER["bundle"], WORKER["registry"], WORKER["cfg"], key, items, audio)


def _job_audio(job: ShardJob) -> dict[str, np.ndarray] | None:
    key, items = job
    if TASKS[key.task].modality != "speech":
        return None
    return {it.example.id: load_audio_file(it.example.audio_path) for it in items}


def _init_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TRANSFORMERS_VERBOSITY": "error"}})


class RayExecutor:
    """Run shard jobs on Ray actors, `workers` of them (one GPU each when the cluster has GPUs), and statistics chunks
    as Ray tasks (at most `chunks_in_flight` at a time, so the driver holds a bounded number of results unmerged)."""

    def __init__(self, workers: int = 1, chunks_in_flight: int | None = None):
        self.workers = max(1, workers)
        self.chunks_in_flight = chunks_in_flight

    def map_chunks(self, fn: Callable, jobs: Sequence) -> Iterator:
        """Run `fn(job)` for every job as a Ray task; results come back in job order."""
        import ray

        if not jobs:
            return
        _init_ray()
        task = ray.remote(num_cpus=1)(fn)
        limit = self.chunks_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending = [task.remote(job) for job in jobs[:limit]]
        for i in range(len(jobs)):
            result = ray.get(pending[i])
            pending[i] = None
            if i + limit < len(jobs):
                pending.append(task.remote(jobs[i + limit]))
            yield result

    def map(self, bundle: ModelBundle, registry: SiteRegistry, cfg, jobs: Sequence[ShardJob]) -> Iterator[ShardResult]:
        import ray
        from ray.util import ActorPool

        if not jobs:
            return
        _init_ray()
        gpus = ray.cluster_resources().get("GPU", 0)
        actor = ray.remote(num_gpus=1 if gpus >= 1 else 0, num_cpus=1)(_ShardWorker)
        n = min(self.workers, len(jobs))
        device = cfg.device if gpus >= 1 else "cpu"
        pool = ActorPool([actor.remote(cfg.model, device, cfg, bundle.checksum) for _ in range(n)])
        yield from pool.map_unordered(lambda a, job: a.record.remote(job, _job_audio(job)), list(jobs))
