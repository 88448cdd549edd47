"""Live unit traces: one unit's activation at every frame or token of recorded items, checked against the store.

`TraceService.prepare` validates a request (the run's model, the unit, the step, every item) before it costs
anything, so a bad item is refused with a 4xx naming it; `execute` runs all items through the model in batches as
the recording batched them (`neuron_atlas.engine.unit_trace.trace_items`) and adds each item's stored value, which
the trace's pooled value reproduces.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.api.errors import ApiProblem
from backend.api.live import ModelHost, require_same_model
from backend.api.settings import Settings
from backend.store.reader import NotFoundError, QueryError, StoreReader
from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.record import encoder_stack
from neuron_atlas.engine.tasks import TaskItem
from neuron_atlas.engine.unit_trace import stored_item, trace_items
from neuron_atlas.engine.versions import ENGINE_VERSION

#: Most items one batched trace request may ask for (two pages of 50 top and bottom examples).
MAX_TRACE_ITEMS = 100
#: Items run through the model together (the recording's default batch size on CPU).
TRACE_BATCH_SIZE = 16


@dataclass(frozen=True)
class TraceRequest:
    """One item to trace: the example feeding it, its task and (en->X tasks) which target language."""

    example_id: str
    task: str
    tgt_lang: str | None = None
    modality: str | None = None


@dataclass
class PreparedTraces:
    """A validated trace request: the run, unit, step, each item's store row and rebuilt task item, the examples whose
    audio it needs (decoded only when it runs, so a cached answer costs no decoding), and the key of its result."""

    key: str
    run: dict
    unit_id: int
    site: str
    channel: int
    step: int
    decoder: bool
    max_new_tokens: int
    rows: list[dict]
    items: list[TaskItem]
    audio_ids: list[str]


class TraceService:
    """Validate and run unit traces against the hosted model; `model_lock` is the one every model user holds."""

    def __init__(self, settings: Settings, host: ModelHost, reader_fn: Callable[[], StoreReader | None],
                 model_lock: threading.Lock):
        self.settings = settings
        self.host = host
        self.reader_fn = reader_fn
        self.model_lock = model_lock

    def _reader(self) -> StoreReader:
        reader = self.reader_fn()
        if reader is None:
            raise ApiProblem(503, f"no analysis store is open (expected at {self.settings.store})")
        return reader

    def prepare(self, run_id: str, unit_id: int, requests: Sequence[TraceRequest], step: int | None,
                max_new_tokens: int | None = None, numbered: bool = True) -> PreparedTraces:
        """Check everything a trace needs; errors name the offending field, as `items[i].field` when `numbered`."""
        bundle, registry = self.host.require()
        reader = self._reader()
        run = reader.run(run_id)
        require_same_model(run, bundle, "a live trace would not describe the stored unit")
        if not requests:
            raise ApiProblem(422, "items: give at least one item to trace", "items")
        if len(requests) > MAX_TRACE_ITEMS:
            raise ApiProblem(422, f"items: {len(requests)} items; one request traces at most {MAX_TRACE_ITEMS}", "items")
        limit = self.settings.max_new_tokens
        max_new = limit if max_new_tokens is None else max_new_tokens
        if max_new > limit:
            raise ApiProblem(422, f"max_new_tokens: {max_new} is above this server's limit of {limit}", "max_new_tokens")
        reader.layout(run_id).check_unit(unit_id)
        site, channel = registry.site_of_unit(unit_id)
        decoder = site.stack == "text_decoder"
        rows, items, audio_ids = [], [], []
        for i, req in enumerate(requests):
            where = f"items[{i}]." if numbered else ""
            try:
                row = reader.item_of(run_id, req.task, req.example_id, req.tgt_lang)
            except NotFoundError as exc:
                raise ApiProblem(404, f"{where}{exc}", f"{where}example_id") from None
            except QueryError as exc:
                raise ApiProblem(422, f"{where}{exc}", f"{where}task") from None
            if req.modality is not None and req.modality != row["modality"]:
                raise ApiProblem(422, f"{where}modality: task {req.task} takes {row['modality']} input, not {req.modality}",
                                 f"{where}modality")
            if not decoder and site.stack != encoder_stack(req.task):
                raise ApiProblem(422, f"{where}task: unit {unit_id} is in the {site.stack}, which task {req.task} "
                                      f"({row['modality']} input) does not run; trace it on a task with "
                                      f"{site.stack.split('_')[0]} input", f"{where}task")
            example = reader.example(run_id, req.example_id)
            if row["modality"] == "speech" and req.example_id not in audio_ids:
                audio_ids.append(req.example_id)
            rows.append(row)
            items.append(stored_item(row, example))
        if step is None:
            step = min(run["steps"])
        try:
            reader.check_step(run_id, step)
        except QueryError as exc:
            raise ApiProblem(422, str(exc), "step") from None
        key = _digest({"trace": [run_id, unit_id, step if decoder else None, max_new],
                       "items": [[r["task"], int(r["item"])] for r in rows], "model": bundle.checksum,
                       "mode": run["mode"], "engine": ENGINE_VERSION})
        return PreparedTraces(key, run, unit_id, site.key, channel, step, decoder, max_new, rows, items, audio_ids)

    def execute(self, prepared: PreparedTraces) -> dict[str, Any]:
        """Trace every item (batched, holding the model), each with its stored value; the whole answer."""
        bundle, registry = self.host.require()
        p = prepared
        audio = self._audio(p.run["run_id"], p.audio_ids)
        t0 = time.perf_counter()
        with self.model_lock:
            traced = trace_items(bundle, registry, p.unit_id, p.items, p.step, p.run["mode"], audio,
                                 decode_to=p.max_new_tokens, batch_size=TRACE_BATCH_SIZE)
        seconds = time.perf_counter() - t0
        reader = self._reader()
        run_id = p.run["run_id"]
        out = []
        for row, tr in zip(p.rows, traced):
            stored = reader.unit_value(run_id, p.unit_id, row["task"], p.step if p.decoder else None, int(row["item"]))
            out.append({"example_id": row["example_id"], "task": row["task"], "item": int(row["item"]),
                        "modality": row["modality"], "src_lang": row["src_lang"], "tgt_lang": row["tgt_lang"],
                        "label": row["label"], **tr.to_dict(), "stored": stored})
        return {"run_id": run_id, "unit_id": p.unit_id, "site": p.site, "channel": p.channel,
                "step": p.step if p.decoder else None, "mode": p.run["mode"], "max_new_tokens": p.max_new_tokens,
                "traces": out, "model": {"spec": bundle.spec, "checksum": bundle.checksum},
                "seconds": round(seconds, 4), "batch_size": TRACE_BATCH_SIZE}

    def _audio(self, run_id: str, example_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored 16 kHz waves of these examples (precompute stores them at that rate; anything else is refused)."""
        reader, out = self._reader(), {}
        for example_id in example_ids:
            wave, rate = reader.example_audio(run_id, example_id)
            if rate != SAMPLE_RATE:
                raise ApiProblem(422, f"example_id: stored audio of {example_id!r} is {rate} Hz, not {SAMPLE_RATE}",
                                 "example_id")
            out[example_id] = np.asarray(wave, dtype=np.float32)
        return out

    def trace(self, run_id: str, unit_id: int, example_id: str, task: str, step: int | None, tgt_lang: str | None,
              modality: str | None, charge: Callable[[], None] | None = None) -> dict[str, Any]:
        """One item's trace with the run's fields alongside (GET .../trace). `charge` (the client's rate limit) is
        spent only once every check has passed, so a refused request costs nothing."""
        prepared = self.prepare(run_id, unit_id, [TraceRequest(example_id, task, tgt_lang, modality)], step,
                                numbered=False)
        if charge is not None:
            charge()
        result = self.execute(prepared)
        one = result["traces"][0]
        return {"run_id": run_id, "step": result["step"], "mode": result["mode"], **one,
                "model": result["model"], "seconds": result["seconds"]}


def _digest(obj: Any) -> str:
    return "trace:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
