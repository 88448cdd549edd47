"""`neuron-atlas plan`: what a precompute run will need, before any work, and the check `precompute` runs first.

The figures follow the lean working layout: each pooled activation is written once, in the recording shards, at
`activation_dtype` (4 bytes for float32, 2 for float16), and deleted after its statistics unless
`keep_activations`; an en->X task stores each English input's encoder values once. Recording and statistics go in
phases (precompute.analysis.plan_phases: a text task with the speech task it pairs with), so the peak working disk
holds the largest phase's activations (all of them with `keep_activations`) plus the statistics' Parquet files.
Store sizes use bytes per row measured on DuckDB stores (docs/performance.md, "Capacity plan"); GPU time uses the
model's FLOPs per item counted on a forward pass of the model itself (meta device for `full-random`) against a
stated device peak and utilisation; statistics time uses a sort rate measured on this machine. The statistics are
also planned per array and unit chunk (StatsArray), from which precompute.cluster_plan plans a Ray cluster of N GPUs.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from precompute.config import ConfigError, RunConfig
from precompute.devices import DEFAULT_UTILISATION, DEVICE_PEAK_TFLOPS, GPU_SORT_RATE

#: Sentence ids per FLEURS split (2,009 n-way parallel sentences: 1,509 / 150 / 350). A language may lack a few, so
#: for a dataset that is not local the plan is an upper bound.
FLEURS_SPLIT_SENTENCES = {"train": 1509, "validation": 150, "test": 350}
#: Typical input sizes when the corpus is not at hand (FLEURS utterances average about 10 s; sentences ~40 tokens).
DEFAULT_SECONDS = 10.0
DEFAULT_TOKENS = 40
#: Bytes per row of the store's per-unit tables as DuckDB writes them (measured, docs/performance.md), and of the
#: statistics' Parquet files before ingestion; a `unit_examples` row costs a few bytes plus, per kept item and end,
#: its bit-packed item number and a 4-byte value.
STORE_BYTES_PER_ROW = {"unit_stats": 26.0, "selections": 6.0, "unit_distributions": 50.0}
PARQUET_BYTES_PER_ROW = {"unit_stats": 30.0, "unit_distributions": 57.0}
EXAMPLE_ROW_BYTES = 24.0
#: DuckDB allocates a table's storage in blocks of this size.
BLOCK_BYTES = 256 * 1024
#: FLAC of 16-bit 16 kHz speech, bytes per second of audio (measured on the built-in corpus).
FLAC_BYTES_PER_S = 21_700.0
#: Bytes of a store's other tables (catalog, runs, items, examples, concepts, the analysis tables: a block or so each).
STORE_BASE_BYTES = 12 * BLOCK_BYTES
#: Host RAM while loading a model, as a multiple of its weights (13.2 GB peak RSS for the 9.2 GB full-random model,
#: issue 18).
LOAD_RAM_FACTOR = 1.4
#: Bytes per (concept, unit) of a statistics chunk's result (five float64 statistics) while the driver merges an array.
STAT_RESULT_BYTES = 40
GB = 1e9


class ResourceError(ConfigError):
    """The machine cannot hold the run; the message names the figure, what is available and the knobs that help."""


@dataclass
class ArrayBytes:
    """One (task, stack, step) activation array of the run."""

    task: str
    stack: str
    step: int | None
    items: int
    units: int
    bytes: int


@dataclass
class StatsArray:
    """The statistics of one recorded array in one phase: its unit chunks (one job each, a Ray task on a cluster), what
    one chunk job reads and holds, and what the driver holds while it merges the array's chunk results."""

    phase: str
    name: str
    units: int
    columns: int
    chunk_units: int
    chunks: int
    shards: int
    task_ram_bytes: int
    merge_bytes: int
    cpu_seconds: float


@dataclass
class Plan:
    """What a run needs: items, activation bytes, disk, store, RAM, GPU memory and time."""

    config_name: str
    model: str
    activation_dtype: str
    keep_activations: bool
    items: dict[str, int]
    items_source: str
    arrays: list[ArrayBytes]
    stats_bytes: int
    store_bytes: int
    store_tables: dict[str, int]
    peak_work_bytes: int
    peak_store_bytes: int
    ram_bytes: int
    gpu_memory_bytes: int
    flops_per_item: dict[str, float] = field(default_factory=dict)
    gpu_seconds: float | None = None
    device_peak: str = "h200-bf16"
    utilisation: float = DEFAULT_UTILISATION
    stats_cpu_seconds: float = 0.0
    stats_gpu_seconds: float = 0.0
    sort_rate: float = 0.0
    work_dir: str = ""
    store: str = ""
    shard_size: int = 64
    speech_seconds: float = DEFAULT_SECONDS
    held_bytes: int = 0
    result_bytes_per_item: dict[str, int] = field(default_factory=dict)
    audio_bytes_per_item: dict[str, int] = field(default_factory=dict)
    stats_arrays: list[StatsArray] = field(default_factory=list)

    @property
    def activation_bytes(self) -> int:
        return sum(a.bytes for a in self.arrays)

    def lines(self) -> list[str]:
        """The plan as printed by `neuron-atlas plan`."""
        out = [f"plan for {self.config_name!r}: model {self.model}, activations stored as {self.activation_dtype}"
               f"{', kept after the statistics' if self.keep_activations else ', deleted after their statistics'}",
               f"items per task ({self.items_source}):"]
        out += [f"  {t:10} {n:>9,}" for t, n in self.items.items()]
        out.append(f"  {'total':10} {sum(self.items.values()):>9,}")
        out.append("activation bytes per task x stack x step:")
        for a in self.arrays:
            where = f"{a.stack}" + (f" step {a.step}" if a.step is not None else "")
            rows = "inputs" if a.step is None and a.items != self.items.get(a.task) else "items"
            out.append(f"  {a.task:10} {where:22} {a.items:>7,} {rows:6} x {a.units:>9,} units = {_gb(a.bytes)}")
        out.append(f"  total activations                 {_gb(self.activation_bytes)}")
        held = "all activations" if self.keep_activations else "the largest phase's activations"
        out.append(f"peak working disk (work_dir): {_gb(self.peak_work_bytes)} ({held} + statistics files "
                   f"{_gb(self.stats_bytes)})")
        out.append(f"final store: {_gb(self.store_bytes)} (" + ", ".join(
            f"{t} {_gb(b)}" for t, b in sorted(self.store_tables.items(), key=lambda kv: -kv[1]) if b >= 1e6) + ")")
        out.append(f"peak store disk (a copy is written beside the store, then renamed): {_gb(self.peak_store_bytes)}")
        out.append(f"peak host RAM: {_gb(self.ram_bytes)} (model load, shard buffers, one statistics chunk)")
        out.append(f"GPU memory: {_gb(self.gpu_memory_bytes)} (bf16 weights + one batch's working set)")
        if self.gpu_seconds is not None:
            fl = ", ".join(f"{t} {f / 1e9:,.0f}" if f >= 1e11 else f"{t} {f / 1e9:.3g}" for t, f in self.flops_per_item.items())
            out.append(f"model GFLOPs per item (counted forward passes): {fl}")
            out.append(f"estimated GPU recording time: {_hours(self.gpu_seconds)} at {self.utilisation:.0%} of "
                       f"{DEVICE_PEAK_TFLOPS[self.device_peak]:,.0f} TFLOP/s ({self.device_peak})")
        out.append(f"statistics (sorts): {_hours(self.stats_cpu_seconds)} on this machine's CPU "
                   f"({self.sort_rate / 1e6:,.0f} M elements/s, measured), {_hours(self.stats_gpu_seconds)} on a GPU "
                   f"({GPU_SORT_RATE / 1e9:.0f} G elements/s, assumed)")
        return out


def _gb(n: float) -> str:
    return f"{n / GB:,.2f} GB" if n >= 0.01 * GB else f"{n / 1e6:,.2f} MB"


def _hours(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min" if s >= 60 else f"{s:,.1f} s"


def dtype_bytes(cfg: RunConfig) -> tuple[str, int]:
    """The run's activation storage type and its size (config `activation_dtype`, float32 when absent)."""
    name = str(getattr(cfg, "activation_dtype", "float32"))
    if name not in ("float32", "float16"):
        raise ConfigError(f"activation_dtype: expected float32 or float16, not {name!r}")
    return name, np.dtype(name).itemsize


def planned_examples(cfg: RunConfig, examples: Sequence | None = None) -> tuple[list, str]:
    """The corpus examples the run will use: given, loaded when local, or FLEURS's split size when the dataset is
    not on this machine (stand-in examples, only counted)."""
    from neuron_atlas.engine.example import Example

    if examples is not None:
        return list(examples), "from the corpus"
    c = cfg.corpus
    if c.source == "fleurs" and not Path(c.fleurs_dataset).exists():
        if c.fleurs_split not in FLEURS_SPLIT_SENTENCES:
            raise ConfigError(f"corpus.fleurs_split: unknown FLEURS split {c.fleurs_split!r}; expected one of "
                              f"{', '.join(FLEURS_SPLIT_SENTENCES)}")
        n = FLEURS_SPLIT_SENTENCES[c.fleurs_split]
        n = min(n, c.max_sentences) if c.max_sentences else n
        langs = list(dict.fromkeys([*c.languages]))
        stand_in = [Example(id=f"plan:{s}:{lang}", sentence_id=f"plan-{s}", lang=lang, text="", reference="",
                            audio_path=Path("not-local")) for s in range(n) for lang in langs]
        return stand_in, f"FLEURS {c.fleurs_split} split size ({n} sentence ids, an upper bound), dataset not local"
    from precompute.corpus import load_corpus

    return load_corpus(c, progress=False), "from the corpus"


def _input_sizes(bundle, examples: Sequence) -> tuple[float, int]:
    """Mean speech seconds and text tokens per example (defaults when the corpus is not at hand)."""
    import soundfile as sf

    audio = [e.audio_path for e in examples if e.audio_path is not None and Path(e.audio_path).is_file()]
    seconds = float(np.mean([sf.info(str(p)).duration for p in audio])) if audio else DEFAULT_SECONDS
    texts = [e.text for e in examples if e.text]
    tokens = int(round(np.mean([len(bundle.tokenizer(t)["input_ids"]) for t in texts]))) if texts else DEFAULT_TOKENS
    return seconds, tokens


def count_flops(bundle, task: str, steps: Sequence[int], seconds: float, tokens: int) -> float:
    """Model FLOPs of one item: the encoder with the first step's decoder prefix, the other steps' decoder passes, and
    greedy generation up to the last step (counted as one decoder pass over that prefix), with FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from neuron_atlas.engine.tasks import TASKS

    model, dev = bundle.model, bundle.device
    if TASKS[task].modality == "speech":
        feats = bundle.feature_extractor(np.zeros(int(seconds * 16000), np.float32), sampling_rate=16000,
                                         return_tensors="pt")
        inputs = {"input_features": feats["input_features"].to(dev, dtype=bundle.dtype)}
    else:
        inputs = {"input_ids": torch.zeros((1, tokens), dtype=torch.long, device=dev)}
    steps = sorted(steps)
    prefix = lambda n: torch.zeros((1, max(n, 1)), dtype=torch.long, device=dev)  # noqa: E731
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(**inputs, decoder_input_ids=prefix(steps[0]), use_cache=False)
        enc = (out.encoder_last_hidden_state,)
        for s in [*steps[1:], steps[-1] - 1]:
            model(encoder_outputs=enc, decoder_input_ids=prefix(s), use_cache=False)
    return float(counter.get_total_flops())


def measure_sort_rate(seconds: float = 0.3) -> float:
    """Float32 elements per second this machine argsorts along rows (as the AP statistics do)."""
    x = np.random.default_rng(0).standard_normal((256, 4096), dtype=np.float32)
    np.argsort(x[:8], axis=1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.argsort(x, axis=1, kind="stable")
        n += x.size
    return n / (time.perf_counter() - t0)


def _blocks(n: float) -> int:
    return int(math.ceil(n / BLOCK_BYTES) * BLOCK_BYTES)


def _store_tables(cfg: RunConfig, registry, items: dict, concepts, examples: Sequence,
                  seconds: float) -> tuple[dict[str, int], int]:
    """Estimated bytes per store table (the per-unit tables, audio, and the rest), and of the statistics' Parquet
    files in the work folder."""
    from precompute.analysis import DECODER, decoder_scopes
    from neuron_atlas.engine.record import encoder_stack
    from neuron_atlas.engine.store_schema import TOP_EXAMPLES
    from neuron_atlas.engine.tasks import TASKS

    width = {s: len(r) for s, r in registry.stack_ranges.items()}
    stats_rows = sum(width[s] for c in concepts for s in c.stacks)
    scope_sizes = {s: [int(m.sum()) for m in decoder_scopes(registry, s).values()] for s in width}
    # per scope and k: top k, bottom k, both 2k, random k and 2k
    sel_rows = sum(6 * min(k, n // 2) for c in concepts for s in c.stacks for n in scope_sizes[s] for k in cfg.analysis.ks)
    dist_rows = 0
    example_bytes = 0.0
    for task, rows in items.items():
        langs = len({it.label for it in rows})
        arrays = width[encoder_stack(task)] + len(cfg.steps) * width[DECODER]
        dist_rows += arrays * langs
        keep = min(TOP_EXAMPLES, len(rows))
        item_bytes = max(math.ceil(math.log2(max(len(rows), 2))), 1) / 8
        example_bytes += arrays * (EXAMPLE_ROW_BYTES + 2 * keep * (item_bytes + 4))
    speech = sum(1 for e in examples if e.audio_path is not None) if any(
        TASKS[t].modality == "speech" for t in cfg.tasks) else 0
    tables = {
        "unit_stats": _blocks(stats_rows * STORE_BYTES_PER_ROW["unit_stats"]),
        "selections": _blocks(sel_rows * STORE_BYTES_PER_ROW["selections"]),
        "unit_distributions": _blocks(dist_rows * STORE_BYTES_PER_ROW["unit_distributions"]),
        "unit_examples": _blocks(example_bytes),
        "example_audio": _blocks(speech * seconds * FLAC_BYTES_PER_S),
        "other tables": STORE_BASE_BYTES,
    }
    parquet = (stats_rows * PARQUET_BYTES_PER_ROW["unit_stats"]
               + dist_rows * PARQUET_BYTES_PER_ROW["unit_distributions"] + example_bytes)
    return tables, int(parquet)


def _stats_arrays(cfg: RunConfig, concepts, items: dict, width: dict[str, int], sort_rate: float) -> list[StatsArray]:
    """Every phase's arrays as precompute.analysis.analyse_phase chunks them: the widest item columns of the array's
    tasks and concept groups set the units per chunk (analysis.chunk_units); a chunk job holds its tasks' unit ranges,
    one concept matrix, its sorted copy and int64 sort order; the driver holds all of an array's chunk results (five
    statistics per concept and unit, magnitudes per language, the unit summaries) and their concatenation."""
    from precompute.analysis import (DECODER, array_name, chunk_units, group_concepts, phase_concepts, phase_name,
                                     plan_phases, task_arrays)
    from neuron_atlas.engine.store_schema import TOP_EXAMPLES

    langs = {t: len({it.label for it in rows}) for t, rows in items.items()}
    # per unit and reader task: its distribution rows (one per language), an examples row with its top/bottom values
    summary_bytes = {t: langs[t] * PARQUET_BYTES_PER_ROW["unit_distributions"] + EXAMPLE_ROW_BYTES
                     + 2 * min(TOP_EXAMPLES, len(items[t])) * 8 for t in items}
    out = []
    for tasks in plan_phases(cfg.tasks, cfg.mode):
        groups = group_concepts(phase_concepts(concepts, tasks))
        for name in dict.fromkeys(n for task in tasks for n in task_arrays(task, cfg.steps)):
            stack = DECODER if name.startswith(DECODER) else name
            units = width[stack]
            readers = [t for t in tasks if name in task_arrays(t, cfg.steps)]
            members = [m for key, m in groups.items() if array_name(key[0], key[1][0]) == name]
            columns = max([len(items[t]) for t in readers] + [sum(len(c) for _, c in m[0].columns) for m in members])
            size = chunk_units(cfg, columns, units)
            read = sum(len(items[t]) for t in readers)
            results = sum(len(m) for m in members) * STAT_RESULT_BYTES + sum(langs[t] for t in readers) * 8
            out.append(StatsArray(
                phase=phase_name(tasks), name=name, units=units, columns=columns, chunk_units=size,
                chunks=math.ceil(units / size), shards=sum(math.ceil(len(items[t]) / cfg.shard_size) for t in readers),
                task_ram_bytes=size * 4 * (read + 4 * columns),
                merge_bytes=int(units * (2 * results + sum(summary_bytes[t] for t in readers))),
                cpu_seconds=(read * units * 3 + sum(units * len(m[0].labels) for m in members)) / sort_rate))
    return out


def make_plan(cfg: RunConfig, bundle=None, registry=None, examples: Sequence | None = None, flops: bool = True,
              device_peak: str = "h200-bf16", utilisation: float = DEFAULT_UTILISATION) -> Plan:
    """The plan of `cfg`: when no model is given, its architecture is built on the meta device from its config (no
    weights are read or downloaded; the tiny model is built in memory)."""
    from neuron_atlas.engine.model.loading import load_model
    from neuron_atlas.engine.model.unit_sites import SiteRegistry
    from neuron_atlas.engine.record import encoder_stack
    from neuron_atlas.engine.tasks import TASKS, task_items
    from precompute.analysis import CHUNK_BYTES, DECODER, define_concepts, plan_phases

    if device_peak not in DEVICE_PEAK_TFLOPS:
        raise ConfigError(f"device peak: unknown {device_peak!r}; expected one of {', '.join(DEVICE_PEAK_TFLOPS)}")
    if not 0 < utilisation <= 1:
        raise ConfigError(f"utilisation must be in (0, 1], not {utilisation}")
    if bundle is None:
        bundle = load_model(cfg.model, device="cpu" if cfg.model == "tiny-random" else "meta")  # no weights read
    registry = registry or SiteRegistry.from_model(bundle.model)
    dtype_name, nbytes = dtype_bytes(cfg)
    examples, source = planned_examples(cfg, examples)
    items = {t: task_items(t, examples, cfg.corpus.languages) for t in cfg.tasks}
    width = {s: len(r) for s, r in registry.stack_ranges.items()}
    arrays = []
    for task, rows in items.items():
        enc = encoder_stack(task)
        inputs = len({it.example.id for it in rows})  # an en->X task stores each English input's encoder values once
        arrays.append(ArrayBytes(task, enc, None, inputs, width[enc], inputs * width[enc] * nbytes))
        for s in cfg.steps:
            arrays.append(ArrayBytes(task, DECODER, s, len(rows), width[DECODER], len(rows) * width[DECODER] * nbytes))
    concepts = define_concepts(items, cfg.steps)
    seconds, tokens = _input_sizes(bundle, examples) if source == "from the corpus" else (DEFAULT_SECONDS, DEFAULT_TOKENS)
    tables, stats_bytes = _store_tables(cfg, registry, items, concepts, examples, seconds)
    store_bytes = sum(tables.values())
    activation_bytes = sum(a.bytes for a in arrays)
    keep = bool(getattr(cfg, "keep_activations", False))
    phase_bytes = [sum(a.bytes for a in arrays if a.task in tasks) for tasks in plan_phases(cfg.tasks, cfg.mode)]
    held_bytes = activation_bytes if keep or not cfg.analysis.enabled else max(phase_bytes)
    existing = Path(cfg.store).stat().st_size if Path(cfg.store).is_file() else 0
    params = sum(p.numel() for p in bundle.model.parameters())
    host_weights = params * (4 if str(cfg.device) == "cpu" else 2)
    shard_buffer = cfg.shard_size * (max(width.values()) + len(cfg.steps) * width[DECODER]) * 4 * 2
    stats_chunk = CHUNK_BYTES * 6  # one float32 unit chunk, its sorted copy, sort orders and the summaries' sorts
    ram = int(host_weights * LOAD_RAM_FACTOR + shard_buffer + stats_chunk)
    cfg_model = bundle.model.config
    seq = max(int(seconds * 50), tokens)
    working = cfg.batch_size * seq * (getattr(cfg_model, "encoder_ffn_dim", 4096) + 4 * cfg_model.hidden_size) * 2 * 2
    working += cfg.batch_size * getattr(cfg_model, "encoder_attention_heads", 16) * seq * seq * 2
    gpu = int(params * 2 + working + cfg.batch_size * registry.n_units * 4)
    sort_rate = measure_sort_rate()
    stats_arrays = _stats_arrays(cfg, concepts, items, width, sort_rate)
    stats_seconds = sum(a.cpu_seconds for a in stats_arrays)
    plan = Plan(
        config_name=cfg.name, model=cfg.model, activation_dtype=dtype_name,
        keep_activations=keep, items={t: len(r) for t, r in items.items()},
        items_source=source, arrays=arrays, stats_bytes=stats_bytes, store_bytes=store_bytes, store_tables=tables,
        peak_work_bytes=held_bytes + stats_bytes, peak_store_bytes=existing + store_bytes, ram_bytes=ram,
        gpu_memory_bytes=gpu, device_peak=device_peak, utilisation=utilisation, sort_rate=sort_rate,
        stats_cpu_seconds=stats_seconds, stats_gpu_seconds=stats_seconds * sort_rate / GPU_SORT_RATE,
        work_dir=str(cfg.work_dir), store=str(cfg.store), shard_size=cfg.shard_size, speech_seconds=seconds,
        held_bytes=held_bytes, stats_arrays=stats_arrays,
        result_bytes_per_item={t: (width[encoder_stack(t)] + len(cfg.steps) * width[DECODER]) * 4 for t in items},
        audio_bytes_per_item={t: int(seconds * 16000 * 4) if TASKS[t].modality == "speech" else 0 for t in items},
    )
    if flops:
        plan.flops_per_item = {t: count_flops(bundle, t, cfg.steps, seconds, tokens) for t in cfg.tasks}
        total = sum(plan.flops_per_item[t] * n for t, n in plan.items.items())
        plan.gpu_seconds = total / (DEVICE_PEAK_TFLOPS[device_peak] * 1e12 * utilisation)
    return plan


def local_work_dir(url: str) -> Path | None:
    """`work_dir` as a local path, or None for a remote location (whether or not its fsspec driver is installed)."""
    import fsspec

    protocol, path = fsspec.core.split_protocol(str(url))
    return Path(path) if protocol in (None, "file", "local") else None


def missing_driver(url: str) -> str | None:
    """Why this machine cannot open `work_dir` (its fsspec driver is not installed), or None when it can."""
    import fsspec

    protocol = fsspec.core.split_protocol(str(url))[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        return f"fsspec cannot open {protocol}:// here ({exc})"
    return None


def _existing_dir(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def _proc_bytes(path: str, key: str) -> int | None:
    """A `key: N kB` figure of a /proc file in bytes (None where /proc is not there)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _available_ram() -> int:
    found = _proc_bytes("/proc/meminfo", "MemAvailable")
    return found if found is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _process_rss() -> int:
    """Resident bytes of this process (what it already holds, e.g. the model `precompute` loaded before the check)."""
    return _proc_bytes("/proc/self/status", "VmRSS") or 0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else 0


def check_resources(plan: Plan, cfg: RunConfig, run_dir: Path | None = None) -> None:
    """Raise ResourceError, before anything is written, when free disk or RAM cannot hold the plan (what a resumed
    run already has under `run_dir` counts as held)."""
    store = _existing_dir(Path(cfg.store).parent)
    held = _du(run_dir) if run_dir is not None else 0
    local_work = local_work_dir(cfg.work_dir)
    need: dict[Path, int] = {}
    target = store  # a remote work_dir (s3://, ...) has no free-space figure to check here
    if local_work is not None:
        work = _existing_dir(local_work)
        need[work] = plan.peak_work_bytes - held
        if os.stat(work).st_dev == os.stat(store).st_dev:
            target = work
    need[target] = need.get(target, 0) + plan.peak_store_bytes
    knobs = (("activation_dtype: float16 (halves the activations), " if plan.activation_dtype == "float32" else "")
             + "corpus.max_sentences, corpus.languages, tasks, steps, or a work_dir / store on a larger disk")
    for folder, needed in need.items():
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise ResourceError(
                f"not enough disk: the run needs {_gb(needed)} under {folder} (peak working disk "
                f"{_gb(plan.peak_work_bytes)}" + (f", {_gb(held)} already recorded" if held else "")
                + (f", plus the store and its copy {_gb(plan.peak_store_bytes)}" if folder == target else "")
                + f") but {_gb(free)} is free; to make it fit, set {knobs}")
    held_ram = _process_rss()  # the plan counts the whole process, model included: what it holds already counts
    ram = _available_ram() + held_ram
    if plan.ram_bytes > ram:
        raise ResourceError(
            f"not enough memory: the run needs about {_gb(plan.ram_bytes)} of host RAM (model weights x "
            f"{LOAD_RAM_FACTOR}, shard buffers, a statistics chunk) but {_gb(ram)} is available ({_gb(held_ram)} of "
            "it already held by this process); to make it fit, "
            "use a smaller model or device bf16 (device: cuda), or a smaller shard_size")
