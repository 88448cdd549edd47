"""One recording shard: its items recorded with the run's model and settings, by any executor (local or Ray)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuron_atlas.engine.model.loading import ModelBundle, configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.activation_store import ShardKey, decoder_name
from neuron_atlas.engine.record import encoder_stack, length_buckets, record_batch
from neuron_atlas.engine.tasks import TASKS, TaskItem

ShardJob = tuple[ShardKey, list[TaskItem]]
ShardResult = tuple[ShardKey, dict[str, np.ndarray], dict]


def item_lengths(bundle: ModelBundle, items: Sequence[TaskItem], audio: dict[str, np.ndarray] | None = None) -> list[int]:
    """Input length per item (audio samples or tokens), for length bucketing."""
    import soundfile as sf

    if TASKS[items[0].task].modality == "speech":
        if audio is not None:
            return [len(audio[it.example.id]) for it in items]
        return [sf.info(str(it.example.audio_path)).frames for it in items]
    return [len(bundle.tokenizer(it.example.text, src_lang=it.src_lang)["input_ids"]) for it in items]


def record_shard(bundle: ModelBundle, registry: SiteRegistry, cfg, key: ShardKey, items: list[TaskItem],
                 audio: dict[str, np.ndarray] | None = None) -> ShardResult:
    """Record one shard in length buckets; returns its arrays ([items, units] per stack/step) and meta.

    `audio` (example id -> 16 kHz waveform) lets remote workers record without access to the corpus files.
    """
    lengths = item_lengths(bundle, items, audio)
    batch = 1 if cfg.mode == "faithful" else cfg.batch_size
    enc = encoder_stack(key.task)
    pos = {it.index: i for i, it in enumerate(items)}
    enc_out = np.empty((len(items), registry.stack_width(enc)), np.float32)
    dec_out = {s: np.empty((len(items), registry.stack_width("text_decoder")), np.float32) for s in cfg.steps}
    generated: list = [None] * len(items)
    input_ids: list = [None] * len(items)
    mismatched: list = [{} for _ in items]
    prefix: dict[int, list] = {s: [None] * len(items) for s in cfg.steps}
    for bucket in length_buckets(items, lengths, batch):
        rec = record_batch(bundle, registry, bucket, cfg.steps, cfg.mode, audio)
        rows = [pos[it.index] for it in bucket]
        enc_out[rows] = rec.encoder[enc]
        for s in cfg.steps:
            dec_out[s][rows] = rec.decoder[s]
            for r, n in zip(rows, rec.prefix_lengths[s]):
                prefix[s][r] = n
        for r, ids, fed, bad in zip(rows, rec.generated, rec.input_ids, rec.mismatched):
            generated[r] = ids
            input_ids[r] = fed
            mismatched[r] = bad
    arrays = {enc: enc_out, **{decoder_name(s): dec_out[s] for s in cfg.steps}}
    meta = {"items": [it.index for it in items], "generated": generated, "prefix_lengths": {str(s): v for s, v in prefix.items()},
            "input_ids": input_ids, "mismatched": mismatched}
    return key, arrays, meta


#: The model, registry and config a worker process (or Ray actor) loaded once, by `init_worker`.
WORKER: dict = {}


def init_worker(model_spec: str, device: str, cfg, checksum: str) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    bundle = load_model(model_spec, device=device)
    if bundle.checksum != checksum:
        raise RuntimeError(
            f"worker loaded {model_spec!r} with checksum {bundle.checksum}, but the run uses {checksum}: "
            "a model modified in memory cannot be recorded by worker processes (use workers=1)"
        )
    configure_cpu_threads(bundle)
    WORKER.update(bundle=bundle, registry=SiteRegistry.from_model(bundle.model), cfg=cfg)


def run_job(job: ShardJob) -> ShardResult:
    return record_shard(WORKER["bundle"], WORKER["registry"], WORKER["cfg"], *job)
