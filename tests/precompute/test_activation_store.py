"""The shard store on its own: unit chunks assembled from unit-major shards at any fsspec location, English encoder
inputs stored once, float16 storage, deletion; and the config's work_dir checks."""
from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import fsspec
import numpy as np
import pytest

from precompute.activation_store import (ShardKey, TaskActivations, activation_bytes, dedupe_encoder, delete_activations,
                                         encoder_sources, load_acts, read_shard_meta, shard_done, unit_chunk, write_shard)
from precompute.config import ConfigError, load_run_config

N_ENC, N_DEC = 37, 23


def en2x_items(langs=("deu", "fra", "spa"), sentences=5):
    """An en->X task's items: every target language repeats the same English example of a sentence."""
    items = []
    for lang in langs:
        for s in range(sentences):
            items.append(SimpleNamespace(index=len(items), label=lang, example=SimpleNamespace(id=f"eng-{s}")))
    return items


def record_synthetic(location, items, shard_size=2, dtype="float32", seed=0):
    """Write shards as the pipeline does (encoder rows de-duplicated); returns the dense [items, units] arrays."""
    rng = np.random.default_rng(seed)
    sentence = np.array([int(it.example.id.split("-")[1]) for it in items])
    enc = rng.standard_normal((sentence.max() + 1, N_ENC)).astype(np.float32)[sentence]  # same input, same values
    dec = rng.standard_normal((len(items), N_DEC)).astype(np.float32) * 10
    sources = encoder_sources(items)
    by_lang = {}
    for it in items:
        by_lang.setdefault(it.label, []).append(it)
    for lang, rows in by_lang.items():
        for i in range(0, len(rows), shard_size):
            chunk = rows[i:i + shard_size]
            idx = [it.index for it in chunk]
            key = ShardKey("en2x_t2tt", lang, idx[0], idx[-1] + 1)
            arrays, meta = dedupe_encoder({"text_encoder": enc[idx], "text_decoder.step2": dec[idx]}, {"items": idx},
                                          "text_encoder", sources)
            write_shard(location, key, arrays, meta, dtype)
    return enc, dec


@pytest.mark.parametrize("where", ["local", "file-url", "memory"])
def test_unit_chunks_assemble_every_item_from_the_shards(tmp_path, where):
    location = {"local": tmp_path / "w", "file-url": (tmp_path / "w").as_uri(),
                "memory": f"memory://store-test-{uuid.uuid4().hex}/w"}[where]
    items = en2x_items()
    enc, dec = record_synthetic(location, items)
    acts = TaskActivations(location, "en2x_t2tt")
    assert acts.n_items == len(items) and acts.n_units("text_encoder") == N_ENC
    assert np.array_equal(load_acts(location, "en2x_t2tt", "text_encoder"), enc.T)
    assert np.array_equal(load_acts(location, "en2x_t2tt", "text_decoder.step2"), dec.T)
    for start, stop in [(0, 1), (5, 19), (30, N_ENC)]:
        assert np.array_equal(unit_chunk(location, "en2x_t2tt", "text_encoder", start, stop), enc.T[start:stop])
    # each English input's encoder values are stored once, in the first target language's shards
    meta = read_shard_meta(location, ShardKey("en2x_t2tt", "fra", 5, 7))
    assert meta["encoder_items"] == [] and meta["encoder_source"] == [0, 1]
    fs, path = fsspec.core.url_to_fs(str(location))
    files = fs.glob(f"{path}/shards/*/*/*/text_encoder.npy")
    assert sum(fs.size(f) for f in files) - 128 * len(files) == 5 * N_ENC * 4  # 5 English inputs; 128-byte headers


def test_float16_storage_halves_the_bytes_and_saturates_instead_of_overflowing(tmp_path):
    items = en2x_items(langs=("deu",), sentences=4)
    record_synthetic(tmp_path / "a", items, dtype="float32")
    enc, dec = record_synthetic(tmp_path / "b", items, dtype="float16")
    headers = 128 * len(list((tmp_path / "a").rglob("*.npy")))
    assert activation_bytes(tmp_path / "b") - headers == (activation_bytes(tmp_path / "a") - headers) // 2
    got = load_acts(tmp_path / "b", "en2x_t2tt", "text_decoder.step2")
    assert got.dtype == np.float32 and np.allclose(got, dec.T, rtol=1e-3, atol=1e-3)
    key = ShardKey("en2x_t2tt", "deu", 0, 1)
    huge = {"text_encoder": np.full((1, N_ENC), 1e6, np.float32), "text_decoder.step2": np.full((1, N_DEC), -1e6, np.float32)}
    write_shard(tmp_path / "c", key, huge, {"items": [0]}, "float16")
    assert np.isfinite(load_acts(tmp_path / "c", "en2x_t2tt", "text_encoder")).all()


def test_deleting_activations_keeps_the_meta_and_says_why_a_read_fails(tmp_path):
    record_synthetic(tmp_path, en2x_items())
    assert delete_activations(tmp_path, ["en2x_t2tt"]) > 0 and activation_bytes(tmp_path) == 0
    assert shard_done(tmp_path, ShardKey("en2x_t2tt", "deu", 0, 2))
    with pytest.raises(FileNotFoundError, match="keep_activations"):
        unit_chunk(tmp_path, "en2x_t2tt", "text_decoder.step2", 0, 3)
    with pytest.raises(FileNotFoundError, match="run the recording first"):
        TaskActivations(tmp_path, "t2tt")


def write_config(tmp_path, **over):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"model": "tiny-random", **over}))
    return path


def test_work_dir_urls_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"work_dir: work_dir 'nosuchfs://bucket/work': fsspec cannot open nosuchfs://"):
        load_run_config(write_config(tmp_path, work_dir="nosuchfs://bucket/work"))
    with pytest.raises(ConfigError, match="memory:// folder lives in one process"):
        load_run_config(write_config(tmp_path, work_dir="memory://w", executor="ray"))
    cfg = load_run_config(write_config(tmp_path, work_dir="memory://w", activation_dtype="float16"))
    assert cfg.work_dir == "memory://w" and not list(tmp_path.glob("*/"))
    with pytest.raises(ConfigError, match="activation_dtype"):
        load_run_config(write_config(tmp_path, activation_dtype="int8"))


def test_storage_settings_leave_float32_run_ids_unchanged(tmp_path):
    base = load_run_config(write_config(tmp_path))
    assert load_run_config(write_config(tmp_path, keep_activations=True)).digest() == base.digest()
    assert load_run_config(write_config(tmp_path, analysis={"chunk_units": 64})).digest() == base.digest()
    assert "activation_dtype" not in base.identity() and "keep_activations" not in base.identity()
    assert load_run_config(write_config(tmp_path, activation_dtype="float16")).digest() != base.digest()
