"""The plan of a run on a Ray cluster of N GPUs, computed from the single-machine Plan's figures.

Recording: one actor per GPU records shards (precompute.ray_executor); every result comes back to the driver through
Ray's object store as float32 [items, units] arrays, with the speech items' waveforms sent out with the jobs, and the
driver writes each shard to `work_dir` at `activation_dtype`. Statistics: one Ray task (one CPU) per unit chunk of
one array, reading its unit range from every shard of the phase's tasks in `work_dir`; the driver merges one array's
chunk results at a time and writes the statistics files, then the store. Phases run one after another (record, then
analyse), so the wall time adds them up.
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass

from precompute.config import ConfigError
from precompute.devices import DEFAULT_CPUS_PER_NODE, DEFAULT_DRIVER_GBIT, DEFAULT_GPUS_PER_NODE, DEVICE_PEAK_TFLOPS
from precompute.plan import Plan, StatsArray, _gb, _hours, local_work_dir


@dataclass
class ClusterPlan:
    """What a run needs on N GPUs: each GPU's share, the shared work_dir, the driver's traffic and memory, the Ray
    tasks, and time."""

    plan: Plan
    gpus: int
    gpus_per_node: int
    cpus_per_node: int
    driver_gbit: float = DEFAULT_DRIVER_GBIT

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)

    @property
    def cpus(self) -> int:
        return self.nodes * self.cpus_per_node

    @property
    def items(self) -> int:
        return sum(self.plan.items.values())

    @property
    def items_per_gpu(self) -> int:
        return math.ceil(self.items / self.gpus)

    @property
    def recording_seconds(self) -> float | None:
        """GPU recording time on the cluster: the single GPU's, shared by N (the plan's utilisation on each)."""
        return None if self.plan.gpu_seconds is None else self.plan.gpu_seconds / self.gpus

    @property
    def work_local(self) -> bool:
        return local_work_dir(self.plan.work_dir) is not None

    @property
    def work_peak_bytes(self) -> int:
        """Peak of the shared work_dir: the single machine's; a remote work_dir holds only the shards (the statistics
        files go beside the store on the driver, precompute.pipeline.stats_folder)."""
        return self.plan.peak_work_bytes if self.work_local else self.plan.held_bytes

    @property
    def result_bytes(self) -> int:
        """Bytes the recording actors send the driver: float32 results of every item."""
        return sum(self.plan.result_bytes_per_item[t] * n for t, n in self.plan.items.items())

    @property
    def audio_bytes(self) -> int:
        """Bytes of waveforms the driver sends the recording actors (float32, 16 kHz)."""
        return sum(self.plan.audio_bytes_per_item[t] * n for t, n in self.plan.items.items())

    @property
    def object_store_bytes(self) -> int:
        """Results in flight: one shard per GPU, of the largest items."""
        largest = max(self.plan.result_bytes_per_item[t] + self.plan.audio_bytes_per_item[t] for t in self.plan.items)
        return self.gpus * self.plan.shard_size * largest

    def phase_chunks(self) -> dict[str, list[StatsArray]]:
        phases: dict[str, list[StatsArray]] = {}
        for a in self.plan.stats_arrays:
            phases.setdefault(a.phase, []).append(a)
        return phases

    @property
    def stats_seconds(self) -> float:
        """Statistics wall time: each phase's sorts spread over the cluster's CPUs, at most one CPU per chunk."""
        return sum(sum(a.cpu_seconds for a in arrays) / min(self.cpus, sum(a.chunks for a in arrays))
                   for arrays in self.phase_chunks().values())

    @property
    def transfer_seconds(self) -> float:
        """The least time the driver's link takes to receive every result (it sends the audio on the same link)."""
        return self.result_bytes / (self.driver_gbit * 1e9 / 8)

    @property
    def wall_seconds(self) -> float | None:
        """Recording (the GPUs' time or the driver link's, whichever is longer) plus the statistics."""
        rec = self.recording_seconds
        return None if rec is None else max(rec, self.transfer_seconds) + self.stats_seconds

    def lines(self) -> list[str]:
        """The cluster section as printed by `neuron-atlas plan --gpus N`."""
        p = self.plan
        out = [f"on a Ray cluster of {self.gpus} GPUs ({self.nodes} nodes x {self.gpus_per_node} GPU, "
               f"{self.cpus_per_node} CPUs each; --gpus-per-node, --cpus-per-node):",
               f"  items per GPU: {self.items_per_gpu:,} of {self.items:,}"]
        rec = self.recording_seconds
        if rec is None:
            out.append("  recording GPU time per GPU: not computed (--no-flops)")
        else:
            out.append(f"  recording GPU time per GPU: {_hours(rec)} (one GPU's {_hours(p.gpu_seconds)} / {self.gpus})"
                       f" at {p.utilisation:.0%} of {DEVICE_PEAK_TFLOPS[p.device_peak]:,.0f} TFLOP/s ({p.device_peak})")
        out.append(f"  GPU memory per GPU: {_gb(p.gpu_memory_bytes)} (each holds the bf16 model and one batch)")
        held = "all activations" if p.keep_activations else "the largest phase's activations"
        where = "+ statistics files" if self.work_local else "(statistics files stay on the driver)"
        out.append(f"  shared work_dir {p.work_dir}: peak {_gb(self.work_peak_bytes)} ({held} {where})")
        per_item = ", ".join(f"{t} {_gb(b)}" for t, b in p.result_bytes_per_item.items())
        out.append(f"  driver network in: {_gb(self.result_bytes)} of float32 results (per item: {per_item})")
        out.append(f"  driver network out: {_gb(p.activation_bytes)} of shards to work_dir at {p.activation_dtype} + "
                   f"{_gb(self.audio_bytes)} of audio to the GPUs ({p.speech_seconds:.1f} s per speech item)")
        if rec:
            sent = p.activation_bytes + self.audio_bytes
            out.append(f"  at the planned rate ({self.items / rec:,.0f} items/s over the cluster): "
                       f"in {_gb(self.result_bytes / rec)}/s, out {_gb(sent / rec)}/s")
        out.append(f"  driver link {self.driver_gbit:g} Gbit/s (--driver-gbit): receiving the results takes at least "
                   f"{_hours(self.transfer_seconds)} (at most {self.items / self.transfer_seconds:,.0f} items/s)")
        out.append(f"  Ray object store in flight: {self.gpus} GPUs x {p.shard_size} items (shard_size) x "
                   f"{_gb(self.object_store_bytes / (self.gpus * p.shard_size))} = {_gb(self.object_store_bytes)}")
        arrays = p.stats_arrays
        if arrays:
            out.append(f"  statistics: {sum(a.chunks for a in arrays):,} Ray tasks, one per unit chunk, reading every "
                       f"shard once ({_gb(p.activation_bytes)} from work_dir):")
            out += [f"    {a.phase:22} {a.name:22} {a.units:>9,} units / {a.chunk_units:>7,} per chunk = "
                    f"{a.chunks:>5,} chunks x {a.columns:,} columns, {a.shards:,} shards read" for a in arrays]
            big = max(arrays, key=lambda a: a.task_ram_bytes)
            merge = max(arrays, key=lambda a: a.merge_bytes)
            out.append(f"  RAM per statistics task: up to {_gb(big.task_ram_bytes)} ({big.phase} {big.name})")
            out.append(f"  driver merge memory: {_gb(merge.merge_bytes)} (largest array: {merge.phase} {merge.name})")
        stats_where = (f"{p.work_dir}/<run id>/stats" if self.work_local
                       else f"beside the store, {Path(p.store).parent}/.<run id>-stats")
        out.append(f"  statistics files (written by the driver, {stats_where}): {_gb(p.stats_bytes)}")
        out.append(f"  final store (written by the driver): {_gb(p.store_bytes)}")
        stats = f"statistics {_hours(self.stats_seconds)} over {self.cpus:,} CPUs at this machine's measured sort rate"
        if rec is None:
            out.append(f"  wall time: recording not computed (--no-flops) + {stats}")
        else:
            bound = "the GPUs" if rec >= self.transfer_seconds else "the driver link"
            recording = _hours(max(rec, self.transfer_seconds))
            out.append(f"  wall time: {_hours(self.wall_seconds)} = recording {recording} (bound by {bound}) + {stats}")
        return out


def check_cluster(gpus: int, cpus_per_node: int = DEFAULT_CPUS_PER_NODE, gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
                  driver_gbit: float = DEFAULT_DRIVER_GBIT) -> None:
    """ConfigError naming the bad figure when a count is not a whole number of at least 1, or the link not positive."""
    for name, value in (("--gpus", gpus), ("--cpus-per-node", cpus_per_node), ("--gpus-per-node", gpus_per_node)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
    if not driver_gbit > 0:
        raise ConfigError(f"--driver-gbit must be positive, not {driver_gbit!r}")


def cluster_plan(plan: Plan, gpus: int, cpus_per_node: int = DEFAULT_CPUS_PER_NODE,
                 gpus_per_node: int = DEFAULT_GPUS_PER_NODE, driver_gbit: float = DEFAULT_DRIVER_GBIT) -> ClusterPlan:
    """The plan on `gpus` GPUs (checked by check_cluster)."""
    check_cluster(gpus, cpus_per_node, gpus_per_node, driver_gbit)
    return ClusterPlan(plan, gpus, gpus_per_node, cpus_per_node, driver_gbit)
