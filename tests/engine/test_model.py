"""Model loading and the unit-site registry."""
from __future__ import annotations

import pytest
import torch

from neuron_atlas.engine.model.hooks import HookPoints, channels_last
from neuron_atlas.engine.model.loading import ModelLoadError, load_model, pick_device_dtype, save_bundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry

LARGE_COUNTS = {"speech_encoder": 640_000, "text_encoder": 369_664, "text_decoder": 492_544}


def test_tiny_random_is_eval_seeded_and_knows_corpus_languages(tiny_bundle):
    assert not tiny_bundle.model.training
    assert tiny_bundle.languages == ("eng", "deu", "spa", "fra", "jpn", "cmn")
    assert tiny_bundle.dtype == torch.float32
    again = load_model("tiny-random", device="cpu")
    assert again.checksum == tiny_bundle.checksum
    other = load_model("tiny-random", device="cpu", seed=1)
    assert other.checksum != tiny_bundle.checksum
    tok = tiny_bundle.tokenizer
    ids = tok("Le train part.", src_lang="fra")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0]) == "__fra__" and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids


def test_save_pretrained_folder_roundtrip_keeps_language_maps_and_outputs(tiny_bundle, tmp_path):
    save_bundle(tiny_bundle, tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert not loaded.model.training
    assert loaded.languages == tiny_bundle.languages
    assert loaded.model.generation_config.text_decoder_lang_to_code_id == tiny_bundle.model.generation_config.text_decoder_lang_to_code_id
    enc = tiny_bundle.tokenizer(["Le train part à sept heures."], src_lang="fra", return_tensors="pt")
    a = tiny_bundle.model.generate(**enc, tgt_lang="eng", generate_speech=False, max_new_tokens=6).sequences
    b = loaded.model.generate(**enc, tgt_lang="eng", generate_speech=False, max_new_tokens=6).sequences
    assert torch.equal(a, b)
    assert len(loaded.checksum) == 16


def test_a_saved_folder_builds_on_the_meta_device_from_its_config_alone(tiny_bundle, tmp_path):
    """What `neuron-atlas plan` loads: the architecture, processor and languages, with no weights read (the weights
    file is removed to prove it), so planning the real checkpoint needs only its small config files."""
    save_bundle(tiny_bundle, tmp_path / "m")
    for weights in (tmp_path / "m").glob("*.safetensors"):
        weights.unlink()
    meta = load_model(str(tmp_path / "m"), device="meta")
    assert all(p.is_meta for p in meta.model.parameters())
    assert sum(p.numel() for p in meta.model.parameters()) == sum(p.numel() for p in tiny_bundle.model.parameters())
    assert meta.languages == tiny_bundle.languages and meta.checksum == f"meta:{tmp_path / 'm'}"
    assert SiteRegistry.from_model(meta.model).n_units == SiteRegistry.from_model(tiny_bundle.model).n_units
    with pytest.raises(ModelLoadError, match="no-such-folder"):
        load_model(str(tmp_path / "no-such-folder"), device="meta")


def test_unknown_model_spec_names_the_spec(tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-folder"):
        load_model(str(tmp_path / "no-such-folder"), device="cpu")


def test_cpu_policy_is_fp32():
    dev, dtype = pick_device_dtype("cpu")
    assert dev.type == "cpu" and dtype == torch.float32


def test_full_size_registry_on_meta_device_has_exact_counts():
    bundle = load_model("full-random", device="meta")
    assert all(p.is_meta for p in bundle.model.parameters())
    registry = SiteRegistry.from_model(bundle.model)
    for stack, n in LARGE_COUNTS.items():
        assert registry.stack_width(stack) == n
    assert registry.n_units == sum(LARGE_COUNTS.values())
    counts = registry.counts()
    assert counts.loc["text_decoder", "cross-attn"] == 24 * 4 * 1024
    assert counts.loc["speech_encoder", "conv"] == 24 * (2048 + 1024 + 1024 + 1024)
    names = {s.module for s in registry.sites}
    assert not any("feature_projection" in n or "distance_embedding" in n for n in names)


def test_registry_lookups_name_the_problem(tiny_registry):
    site = tiny_registry.sites[5]
    assert tiny_registry.unit_id(site.key, 0) == site.offset
    assert tiny_registry.site_of_unit(site.offset + 1) == (site, 1)
    with pytest.raises(KeyError, match="unknown module 'nope'"):
        tiny_registry.unit_id("nope", 0)
    with pytest.raises(IndexError, match=f"channel {site.width} is out of range"):
        tiny_registry.unit_id(site.key, site.width)
    with pytest.raises(IndexError, match="out of range"):
        tiny_registry.site_of_unit(tiny_registry.n_units)


def test_units_frame_expands_sites(tiny_registry):
    units = tiny_registry.units_frame()
    assert len(units) == tiny_registry.n_units
    assert (units["unit_id"].to_numpy() == range(tiny_registry.n_units)).all()
    last = tiny_registry.sites[-1]
    assert units.iloc[-1]["site"] if "site" in units else units.iloc[-1]["key"] == last.key
    assert units.iloc[-1]["channel"] == last.width - 1


@pytest.mark.parametrize("modality", ["speech", "text"])
def test_every_site_fires_with_the_width_its_entry_says(tiny_bundle, tiny_registry, modality):
    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    seen: dict[str, tuple[int, int]] = {}

    def check(site, out):
        x = channels_last(site, out)
        seen[site.key] = (x.shape[-1], x.dim())

    if modality == "speech":
        feats = tiny_bundle.feature_extractor([torch.randn(12000).numpy()], sampling_rate=16000, return_tensors="pt")
        inputs = dict(input_features=feats["input_features"], attention_mask=feats["attention_mask"])
        stacks = {"speech_encoder", "text_decoder"}
    else:
        inputs = dict(tok(["Le train part."], src_lang="fra", return_tensors="pt"))
        stacks = {"text_encoder", "text_decoder"}
    sites = tiny_registry.select(stacks)
    with HookPoints(model, sites, check), torch.no_grad():
        model(**inputs, decoder_input_ids=torch.tensor([[3, 5, 9]]))
    assert set(seen) == {s.key for s in sites}
    for s in sites:
        assert seen[s.key] == (s.width, 3), s.key


def test_bound_site_hooks_see_the_same_calls_as_the_shared_dispatcher(tiny_bundle, tiny_registry):
    """`bind` gives each site its own closure (multi-call modules such as the adapter's GLU still counted per call):
    the same sites fire, in the same order, with the same outputs as through `fn`."""
    model = tiny_bundle.model
    feats = tiny_bundle.feature_extractor([torch.randn(12000).numpy()], sampling_rate=16000, return_tensors="pt")
    inputs = dict(input_features=feats["input_features"], attention_mask=feats["attention_mask"],
                  decoder_input_ids=torch.tensor([[3, 5, 9]]))
    sites = tiny_registry.select({"speech_encoder", "text_decoder"})
    assert any(s.call > 0 for s in sites)
    via_fn: list[tuple[str, float]] = []
    via_bind: list[tuple[str, float]] = []

    def bind(site):
        return lambda module, args, out: via_bind.append((site.key, float(out.sum())))

    with torch.no_grad():
        with HookPoints(model, sites, lambda site, out: via_fn.append((site.key, float(out.sum())))):
            model(**inputs)
        with HookPoints(model, sites, bind=bind):
            model(**inputs)
    assert via_bind == via_fn and {k for k, _ in via_fn} == {s.key for s in sites}
    with pytest.raises(ValueError, match="exactly one of fn and bind"):
        HookPoints(model, sites)
