"""The intervention engine: spec validation and serialisation, selections, hooks in every layout, KV cache, speech."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from neuron_atlas.engine.interventions import (
    DECODER_PROMPT_LENGTH,
    STATISTICS,
    InMemoryStats,
    InterventionSpec,
    SpecError,
    UnitStatsSource,
    decoder_step_of_positions,
    generate_with,
    intervene,
    prepare_inputs,
    resolve,
)
from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS

TEXT = "Le train part à sept heures."
MAX_NEW = 16


@pytest.fixture(scope="module")
def stats(tiny_registry):
    """Concept 1: AP for every unit but the text encoder's (NaN); concept 2: AP everywhere; statistics for both."""
    rng = np.random.default_rng(7)
    n = tiny_registry.n_units
    ap1 = rng.random(n)
    text_enc = tiny_registry.stack_ranges["text_encoder"]
    ap1[text_enc.start : text_enc.stop] = np.nan
    ap2 = rng.random(n)
    values = {cid: {s: rng.normal(size=n).astype(np.float32) for s in STATISTICS} for cid in (1, 2)}
    return InMemoryStats(tiny_registry, {1: ap1, 2: ap2}, values)


@pytest.fixture(scope="module")
def text_inputs(tiny_bundle):
    return prepare_inputs(tiny_bundle, text=TEXT, src_lang="fra")


@pytest.fixture(scope="module")
def speech_inputs(tiny_bundle):
    t = np.arange(16000) / 16000
    return prepare_inputs(tiny_bundle, audio=(0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))


def explicit(registry, pred, value, **kw) -> InterventionSpec:
    units = [{"module": s.key, "channel": c} for s in registry.sites if pred(s) for c in range(s.width)]
    return InterventionSpec(units={"kind": "explicit", "units": units}, value=value, **kw)


def is_cross_kv(site) -> bool:
    return site.key.endswith(("cross_attention.k_proj", "cross_attention.v_proj"))


def is_decoder_fc1(site) -> bool:
    return site.stack == "text_decoder" and site.key.endswith("ffn.fc1")


def assert_same(a, b):
    assert torch.equal(a.sequences, b.sequences)
    assert (a.scores is None) == (b.scores is None)
    if a.scores is not None:
        assert torch.equal(a.scores, b.scores)


# ------------------------------------------------------------------------------------------- identity and effect


@pytest.mark.parametrize("modality", ["text", "speech"])
def test_no_units_leaves_generate_bit_identical(tiny_bundle, tiny_registry, text_inputs, speech_inputs, modality):
    inputs = text_inputs if modality == "text" else speech_inputs
    empty = resolve({"units": {"kind": "explicit", "units": []}, "value": {"kind": "zero"}}, tiny_registry, None)
    assert empty.is_empty and empty.sites == {}
    ours = generate_with(tiny_bundle, tiny_registry, empty, inputs, "eng", max_new_tokens=MAX_NEW)
    plain = generate_with(tiny_bundle, tiny_registry, None, inputs, "eng", max_new_tokens=MAX_NEW)
    with torch.no_grad():
        ref = tiny_bundle.model.generate(**inputs, tgt_lang="eng", generate_speech=False, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW)
    assert torch.equal(ours.sequences, ref.sequences)
    assert torch.equal(ours.scores, torch.stack(ref.scores, 1))
    assert_same(ours, plain)
    assert ours.token_ids[0] == ref.sequences[0, DECODER_PROMPT_LENGTH:].tolist()[: len(ours.token_ids[0])]


@pytest.mark.parametrize("modality", ["text", "speech"])
def test_scale_one_on_every_unit_is_the_identity_and_hooks_really_run(tiny_bundle, tiny_registry, text_inputs, speech_inputs, modality):
    inputs = text_inputs if modality == "text" else speech_inputs
    everything = explicit(tiny_registry, lambda s: True, {"kind": "scale", "factor": 1.0})
    resolved = resolve(everything, tiny_registry, None)
    assert len(resolved.unit_ids) == tiny_registry.n_units and len(resolved.sites) == len(tiny_registry.sites)
    base = generate_with(tiny_bundle, tiny_registry, None, inputs, "eng", max_new_tokens=MAX_NEW)
    same = generate_with(tiny_bundle, tiny_registry, resolved, inputs, "eng", max_new_tokens=MAX_NEW)
    assert_same(base, same)
    nudged = resolve(explicit(tiny_registry, lambda s: True, {"kind": "scale", "factor": 1.01}), tiny_registry, None)
    moved = generate_with(tiny_bundle, tiny_registry, nudged, inputs, "eng", max_new_tokens=MAX_NEW)
    n = min(moved.scores.shape[1], base.scores.shape[1])
    assert not torch.equal(moved.scores[:, :n], base.scores[:, :n])


def test_zeroing_half_the_decoder_fc1_channels_changes_scores_and_a_constant_changes_tokens(tiny_bundle, tiny_registry, text_inputs):
    base = generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=MAX_NEW)
    half = [{"module": s.key, "channel": c} for s in tiny_registry.sites if is_decoder_fc1(s) for c in range(0, s.width, 2)]
    zero = resolve({"units": {"kind": "explicit", "units": half}, "value": {"kind": "zero"}}, tiny_registry, None)
    out = generate_with(tiny_bundle, tiny_registry, zero, text_inputs, "eng", max_new_tokens=MAX_NEW)
    assert (out.scores[:, 0] - base.scores[:, 0]).abs().max() > 1e-4
    loud = resolve(explicit(tiny_registry, is_decoder_fc1, {"kind": "constant", "value": 3.0}), tiny_registry, None)
    steered = generate_with(tiny_bundle, tiny_registry, loud, text_inputs, "eng", max_new_tokens=MAX_NEW)
    assert steered.token_ids != base.token_ids


# ------------------------------------------------------------------------------------------------ hook layouts


def capture(model, module_name):
    """Record every output of one module (register inside `intervene` to see the overwritten output)."""
    seen: list[torch.Tensor] = []
    handle = dict(model.named_modules())[module_name].register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))
    return seen, handle


@pytest.mark.parametrize(
    "key",
    [
        "text_decoder.layers.0.ffn.fc1",
        "text_decoder.layers.1.self_attn_layer_norm",
        "speech_encoder.encoder.layers.0.conv_module.pointwise_conv1",
        "speech_encoder.encoder.layers.1.conv_module.glu",
        "speech_encoder.encoder.layers.0.conv_module.depthwise_conv",
        "speech_encoder.adapter.layers.0.activation@self_attn_conv",
    ],
)
def test_overwrite_hits_exactly_the_chosen_channels_in_every_layout(tiny_bundle, tiny_registry, speech_inputs, key):
    site = tiny_registry.by_key[key]
    chosen = [0, 3, site.width - 1]
    spec = {"units": {"kind": "explicit", "units": [{"module": key, "channel": c} for c in chosen]}, "value": {"kind": "constant", "value": 7.25}}
    resolved = resolve(spec, tiny_registry, None)
    model = tiny_bundle.model

    def run(res):
        with intervene(tiny_bundle, tiny_registry, res):
            seen, handle = capture(model, site.module)
            try:
                generate_with(tiny_bundle, tiny_registry, None, speech_inputs, "eng", max_new_tokens=2)
            finally:
                handle.remove()
        return seen[site.call]

    base, hit = run(None), run(resolved)
    axis = site.channel_axis % base.dim()
    channels = torch.arange(site.width)
    on = torch.isin(channels, torch.tensor(chosen))
    assert torch.all(hit.index_select(axis, channels[on]) == 7.25)
    assert torch.equal(hit.index_select(axis, channels[~on]), base.index_select(axis, channels[~on]))
    assert not torch.all(base.index_select(axis, channels[on]) == 7.25)


def test_positions_last_spares_the_start_token_and_steps_pick_decoder_forwards(tiny_bundle, tiny_registry, text_inputs):
    key = "text_decoder.layers.0.ffn.fc1"
    units = [{"module": key, "channel": c} for c in range(64)]
    resolved = resolve({"units": {"kind": "explicit", "units": units}, "value": {"kind": "constant", "value": 2.5}, "scope": {"positions": "last", "decode_steps": [0, 2]}}, tiny_registry, None)
    with intervene(tiny_bundle, tiny_registry, resolved):
        seen, handle = capture(tiny_bundle.model, key)
        try:
            generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=4, speech=False)
        finally:
            handle.remove()
    assert [o.shape[1] for o in seen] == [2, 1, 1, 1]
    step0 = seen[0][0]
    assert not torch.all(step0[0] == 2.5) and torch.all(step0[1] == 2.5)
    assert torch.all(seen[2] == 2.5)
    assert not torch.any(seen[1] == 2.5) and not torch.any(seen[3] == 2.5)


def test_decoder_step_of_positions():
    assert decoder_step_of_positions(np.arange(6)).tolist() == [0, 0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------------ KV cache


@pytest.mark.parametrize("target", ["cross_kv", "decoder_fc1"])
def test_cached_and_uncached_generation_agree_under_intervention(tiny_bundle, tiny_registry, text_inputs, target):
    pred = is_cross_kv if target == "cross_kv" else is_decoder_fc1
    resolved = resolve(explicit(tiny_registry, pred, {"kind": "constant", "value": 3.0}), tiny_registry, None)
    k_proj = dict(tiny_bundle.model.named_modules())["text_decoder.layers.0.cross_attention.k_proj"]
    calls = []
    handle = k_proj.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    try:
        cached = generate_with(tiny_bundle, tiny_registry, resolved, text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=True)
        n_cached = len(calls)
        uncached = generate_with(tiny_bundle, tiny_registry, resolved, text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=False)
    finally:
        handle.remove()
    assert n_cached == 1 and len(calls) - n_cached == uncached.scores.shape[1]
    base = generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=MAX_NEW)
    assert cached.token_ids == uncached.token_ids
    assert cached.token_ids != base.token_ids
    torch.testing.assert_close(cached.scores, uncached.scores, rtol=0, atol=1e-5)


def test_step_scope_leaves_earlier_steps_alone_cached_or_not(tiny_bundle, tiny_registry, text_inputs):
    resolved = resolve(explicit(tiny_registry, is_decoder_fc1, {"kind": "constant", "value": 3.0}, scope={"decode_steps": [3]}), tiny_registry, None)
    base = generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=MAX_NEW)
    cached = generate_with(tiny_bundle, tiny_registry, resolved, text_inputs, "eng", max_new_tokens=MAX_NEW)
    uncached = generate_with(tiny_bundle, tiny_registry, resolved, text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=False)
    assert torch.equal(cached.scores[:, :3], base.scores[:, :3])
    assert (cached.scores[:, 3] - base.scores[:, 3]).abs().max() > 1e-3
    assert cached.token_ids == uncached.token_ids
    torch.testing.assert_close(cached.scores, uncached.scores, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------------------- speech


def test_speech_output_runs_with_and_without_intervention(tiny_bundle, tiny_registry, speech_inputs):
    resolved = resolve(explicit(tiny_registry, is_cross_kv, {"kind": "constant", "value": 3.0}), tiny_registry, None)
    plain = generate_with(tiny_bundle, tiny_registry, None, speech_inputs, "fra", max_new_tokens=MAX_NEW, speech=True)
    steered = generate_with(tiny_bundle, tiny_registry, resolved, speech_inputs, "fra", max_new_tokens=MAX_NEW, speech=True)
    text_only = generate_with(tiny_bundle, tiny_registry, resolved, speech_inputs, "fra", max_new_tokens=MAX_NEW)
    for out in (plain, steered):
        wave = out.waveform
        assert out.sample_rate == 16000 and wave.ndim == 1 and wave.size > 0 and np.isfinite(wave).all()
        assert out.scores is None
    assert steered.token_ids == text_only.token_ids != plain.token_ids
    assert steered.waveform.shape != plain.waveform.shape or not np.array_equal(steered.waveform, plain.waveform)


# ---------------------------------------------------------------------------------------------- spec and errors


def test_json_round_trip_and_digest_stability():
    a = InterventionSpec.parse({"units": {"kind": "concept", "concept_id": 4, "set": "both", "k": 10}, "value": {"kind": "constant", "value": 1}, "scope": {"decode_steps": [3, 1, 1]}})
    b = InterventionSpec.from_json(json.dumps({"scope": {"decode_steps": [1, 3], "positions": "all"}, "value": {"value": 1.0, "kind": "constant"}, "units": {"k": 10, "set": "both", "concept_id": 4, "kind": "concept", "seed": 0}, "version": 2}))
    assert a == b and a.digest() == b.digest()
    assert a.canonical_json() == json.dumps(json.loads(a.canonical_json()), sort_keys=True, separators=(",", ":"))
    assert " " not in a.canonical_json()
    assert a.digest() == hashlib.sha256(a.canonical_json().encode()).hexdigest()
    assert InterventionSpec.from_json(a.canonical_json()) == a
    assert a.scope.decode_steps == [1, 3] and a.version == 2
    c = InterventionSpec.parse({"units": {"kind": "concept", "concept_id": 4, "set": "both", "k": 10, "seed": 1}, "value": {"kind": "constant", "value": 1}, "scope": {"decode_steps": [1, 3]}})
    assert c.digest() != a.digest()
    default = InterventionSpec(units={"kind": "concept", "concept_id": 4, "set": "top", "k": 10})
    assert default.value.kind == "on_p50" and default.scope.positions == "all" and default.scope.decode_steps == "all"


PARSE_ERRORS = [
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "median"}}, "value.kind", "median"),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "constant"}}, "value.value", "missing"),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "constant", "value": "big"}}, "value.value", "number"),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "scale", "factor": float("inf")}}, "value.factor", "finite"),
    ({"units": {"kind": "explicit", "units": [{"module": "m", "channel": "1"}]}, "value": {"kind": "zero"}}, "units.units[0].channel", "integer"),
    ({"units": {"kind": "explicit", "units": [{"module": "m", "channel": 1, "unit": 2}]}, "value": {"kind": "zero"}}, "units.units[0].unit", "unknown field"),
    ({"units": {"kind": "explicit", "units": [{"module": "m", "channel": 1}]}}, "stats_concept_id", "explicit units must name"),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "zero"}, "stats_concept_id": 1}, "stats_concept_id", "only used with a statistic"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "middle", "k": 3}}, "units.set", "'top'"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 0}}, "units.k", "greater than or equal to 1"),
    ({"units": {"kind": "cluster", "concept_id": 1}}, "units.kind", "cluster"),
    ({"units": {"concept_id": 1, "set": "top", "k": 3}}, "units.kind", "missing"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}, "scope": {"decode_steps": [2, -1]}}, "scope.decode_steps", ">= 0"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}, "scope": {"decode_steps": []}}, "scope.decode_steps", "at least one"),
    ({"version": 2, "units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}, "scope": {"steps": [1]}}, "scope.steps", "unknown field"),
    ({"version": 3, "units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}}, "version", "reads versions 1, 2"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}, "scope": {"positions": "first"}}, "scope.positions", "'last'"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 3}, "version": 0}, "version", "version 0"),
    ({"version": 1}, "units", "missing"),
]


@pytest.mark.parametrize("spec,field,text", PARSE_ERRORS)
def test_malformed_specs_raise_spec_errors_naming_the_field(spec, field, text):
    for attempt in (lambda: InterventionSpec.parse(spec), lambda: InterventionSpec.from_json(json.dumps(spec)), lambda: InterventionSpec(**spec)):
        with pytest.raises(SpecError) as info:
            attempt()
        assert info.value.field == field
        assert str(info.value).startswith(f"{field}: ") and text in str(info.value)


def test_non_object_and_broken_json_are_spec_errors():
    with pytest.raises(SpecError, match="JSON object"):
        InterventionSpec.parse([1, 2])
    with pytest.raises(SpecError, match="not valid JSON"):
        InterventionSpec.from_json("{units")


def _fc1_units(n):
    return [{"module": "text_decoder.layers.0.ffn.fc1", "channel": c} for c in range(n)]


RESOLVE_ERRORS = [
    ({"units": {"kind": "explicit", "units": _fc1_units(3) + [{"module": "x", "channel": 0}]}, "value": {"kind": "zero"}}, "units.units[3].module", "unknown module 'x'"),
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layer.0.ffn.fc1", "channel": 0}]}, "value": {"kind": "zero"}}, "units.units[0].module", "did you mean 'text_decoder.layers.0.ffn.fc1'"),
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 99}]}, "value": {"kind": "zero"}}, "units.units[0].channel", "channel 99 is out of range for 'text_decoder.layers.0.ffn.fc1' (0..63)"),
    ({"units": {"kind": "explicit", "units": _fc1_units(2) + [{"module": "text_decoder.layers.0.ffn.fc1", "channel": -1}]}, "value": {"kind": "zero"}}, "units.units[2].channel", "out of range"),
    ({"units": {"kind": "explicit", "units": _fc1_units(4) + _fc1_units(2)[1:]}, "value": {"kind": "zero"}}, "units.units[4]", "duplicate of units.units[1]"),
    ({"units": {"kind": "concept", "concept_id": 12345, "set": "top", "k": 3}}, "units.concept_id", "unknown concept 12345"),
    ({"units": {"kind": "concept", "concept_id": 2, "set": "top", "k": 5000, "stack": "text_decoder"}}, "units.k", "k=5000 is larger than the 928 units of text_decoder"),
    ({"units": {"kind": "concept", "concept_id": 2, "set": "both", "k": 500, "stack": "text_decoder"}}, "units.k", "both = 1000 units"),
    ({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 1, "stack": "text_encoder"}}, "units.k", "larger than the 0 units of text_encoder"),
    ({"units": {"kind": "concept", "concept_id": 2, "set": "top", "k": 3, "stack": "vision"}}, "units.stack", "unknown stack 'vision'"),
    ({"units": {"kind": "concept", "concept_id": 2, "set": "top", "k": 3, "component": "mlp"}}, "units.component", "unknown component 'mlp'"),
    ({"units": {"kind": "explicit", "units": _fc1_units(2)}, "stats_concept_id": 99}, "stats_concept_id", "unknown concept 99"),
    ({"units": {"kind": "concept", "concept_id": 3, "set": "top", "k": 3}}, "value.kind", "no on_p50 statistics"),
]


@pytest.mark.parametrize("spec,field,text", RESOLVE_ERRORS)
def test_specs_that_do_not_fit_the_model_raise_spec_errors_naming_the_field(tiny_registry, stats, spec, field, text):
    extended = InMemoryStats(tiny_registry, {**stats._ap, 3: np.ones(tiny_registry.n_units)}, {k: v for k, v in stats._values.items()})
    with pytest.raises(SpecError) as info:
        resolve(spec, tiny_registry, extended)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ") and text in str(info.value)


def test_statistic_values_without_a_source_are_refused(tiny_registry):
    with pytest.raises(SpecError, match="no statistics source") as info:
        resolve({"units": {"kind": "explicit", "units": _fc1_units(2)}, "stats_concept_id": 1}, tiny_registry, None)
    assert info.value.field == "value.kind"


def test_missing_statistic_values_are_named(tiny_registry, stats):
    values = {s: v.copy() for s, v in stats._values[2].items()}
    unit = tiny_registry.unit_id("text_decoder.layers.1.ffn.fc2", 5)
    values["on_p90"][unit] = np.nan
    holes = InMemoryStats(tiny_registry, {2: stats._ap[2]}, {2: values})
    spec = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(8)]}, "value": {"kind": "on_p90"}, "stats_concept_id": 2}
    with pytest.raises(SpecError, match="no on_p90 for 1 of the units .*fc2' channel 5") as info:
        resolve(spec, tiny_registry, holes)
    assert info.value.field == "value.kind"


# ---------------------------------------------------------------------------------------- selections and values


def test_in_memory_stats_is_a_unit_stats_source(stats):
    assert isinstance(stats, UnitStatsSource)


def test_concept_selections_match_an_independent_ranking(tiny_registry, stats):
    frame = tiny_registry.units_frame()
    ap = stats._ap[1]
    scope = frame["unit_id"][(frame["stack"] == "text_decoder") & (frame["component"] == "cross-attn")].to_numpy()
    ranked = scope[np.argsort(ap[scope])]
    k = 20
    top = stats.selection(1, "top", k, 0, "text_decoder", "cross-attn")
    bottom = stats.selection(1, "bottom", k, 0, "text_decoder", "cross-attn")
    both = stats.selection(1, "both", k, 0, "text_decoder", "cross-attn")
    assert set(top) == set(ranked[-k:]) and set(bottom) == set(ranked[:k])
    assert set(both) == set(top) | set(bottom) and len(both) == 2 * k
    r1 = stats.selection(1, "random", k, 5, "text_decoder", "cross-attn")
    assert np.array_equal(r1, stats.selection(1, "random", k, 5, "text_decoder", "cross-attn"))
    assert not np.array_equal(r1, stats.selection(1, "random", k, 6, "text_decoder", "cross-attn"))
    assert len(set(r1)) == k and set(r1) <= set(scope)
    anywhere = stats.selection(1, "random", 500, 0, None, None)
    text_encoder = tiny_registry.stack_ranges["text_encoder"]
    assert not ((anywhere >= text_encoder.start) & (anywhere < text_encoder.stop)).any()
    ties = InMemoryStats(tiny_registry, {9: np.zeros(tiny_registry.n_units)})
    assert ties.selection(9, "top", 3, 0, "text_decoder", None).tolist() == list(tiny_registry.stack_ranges["text_decoder"][:3])


def test_tied_aps_follow_the_atlas_order_as_a_full_sort_would(tiny_registry):
    """Top ties go to the smaller unit id; bottom is the reverse of the top order (ties to the larger id), as in
    precompute.selectivity.build_selections, so spec sets equal the atlas's stored sets."""
    from precompute.selectivity import build_selections

    ap = np.random.default_rng(3).integers(0, 5, tiny_registry.n_units).astype(float)
    tied = InMemoryStats(tiny_registry, {5: ap})
    ids = np.arange(tiny_registry.n_units)
    stored = {s.kind: s.units for s in build_selections(ap, ids, {"all": np.ones(len(ids), bool)}, ks=[37])}
    assert tied.selection(5, "bottom", 37, 0, None, None).tolist() == sorted(stored["bottom"].tolist())
    assert tied.selection(5, "top", 37, 0, None, None).tolist() == sorted(stored["top"].tolist())
    for k in (1, 37, 500):
        top = ids[np.lexsort((ids, -ap))[:k]]
        bottom = ids[np.lexsort((-ids, ap))[:k]]
        assert tied.selection(5, "top", k, 0, None, None).tolist() == sorted(top.tolist())
        assert tied.selection(5, "bottom", k, 0, None, None).tolist() == sorted(bottom.tolist())


def test_attention_component_group_spans_self_and_cross_attention(tiny_registry, stats):
    both_kinds = stats.selection(1, "top", 300, 0, "text_decoder", "attention")
    comps = {tiny_registry.site_of_unit(int(u))[0].component for u in both_kinds}
    assert comps == {"self-attn", "cross-attn"}
    with pytest.raises(SpecError, match="units.component: unknown component 'mlp'"):
        resolve({"units": {"kind": "concept", "concept_id": 1, "set": "top", "k": 5, "component": "mlp"}}, tiny_registry, stats)


def test_resolved_concept_intervention_carries_the_concepts_values_grouped_by_site(tiny_registry, stats):
    spec = {"units": {"kind": "concept", "concept_id": 2, "set": "top", "k": 40, "stack": "text_decoder"}, "value": {"kind": "off_mean"}}
    resolved = resolve(spec, tiny_registry, stats)
    expected = stats.selection(2, "top", 40, 0, "text_decoder", None)
    assert np.array_equal(np.sort(resolved.unit_ids), expected)
    assert np.array_equal(resolved.values, stats._values[2]["off_mean"][resolved.unit_ids])
    regrouped = np.concatenate([w.site.offset + w.channels for w in resolved.sites.values()])
    revalues = np.concatenate([w.values for w in resolved.sites.values()])
    order = np.argsort(resolved.unit_ids)
    assert np.array_equal(regrouped, resolved.unit_ids[order]) and np.array_equal(revalues, resolved.values[order])
    assert all(w.site.stack == "text_decoder" for w in resolved.sites.values())
    summary = resolved.describe()
    assert summary["n_units"] == 40 and summary["by_stack"] == {"text_decoder": 40} and summary["digest"] == InterventionSpec.parse(spec).digest()
    cross = resolve({**spec, "stats_concept_id": 1}, tiny_registry, stats)
    assert np.array_equal(cross.values, stats._values[1]["off_mean"][cross.unit_ids])
    assert set(COMPONENTS) >= set(summary["by_component"]) and set(STACKS) >= set(summary["by_stack"])


def test_resolved_tensors_are_built_once_in_the_model_dtype(tiny_registry):
    resolved = resolve({"units": {"kind": "explicit", "units": _fc1_units(4)}, "value": {"kind": "constant", "value": 0.1}}, tiny_registry, None)
    a = resolved.site_tensors(torch.device("cpu"), torch.bfloat16)
    assert a is resolved.site_tensors(torch.device("cpu"), torch.bfloat16)
    t = a["text_decoder.layers.0.ffn.fc1"]
    assert t.fill.dtype == torch.bfloat16 and t.mask.sum() == 4 and t.fill[0] == torch.tensor(0.1, dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------------------- inputs


def test_prepare_inputs_checks_what_it_is_given(tiny_bundle):
    with pytest.raises(ValueError, match="exactly one"):
        prepare_inputs(tiny_bundle)
    with pytest.raises(ValueError, match="src_lang: required"):
        prepare_inputs(tiny_bundle, text=TEXT)
    with pytest.raises(ValueError, match="src_lang: 'xxx'"):
        prepare_inputs(tiny_bundle, text=TEXT, src_lang="xxx")
    with pytest.raises(ValueError, match=r"audio\[0\]"):
        prepare_inputs(tiny_bundle, audio=np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match=r"text\[1\]"):
        prepare_inputs(tiny_bundle, text=[TEXT, " "], src_lang="fra")
    batch = prepare_inputs(tiny_bundle, text=[TEXT, "Bonjour."], src_lang="fra")
    assert batch["input_ids"].shape[0] == 2
    assert batch["input_ids"][0, 0].item() == tiny_bundle.tokenizer.convert_tokens_to_ids("__fra__")
    with pytest.raises(ValueError, match="tgt_lang"):
        generate_with(tiny_bundle, None, None, batch, "kor")


@pytest.mark.parametrize("version", [1, None])
def test_version_1_specs_are_read_with_their_decoding_step_scope(version):
    """Saved findings and share links hold version-1 specs (`scope.steps`): they parse to the same version-2 spec."""
    old = {"units": {"kind": "concept", "concept_id": 4, "set": "top", "k": 3}, "scope": {"positions": "last", "steps": [2, 0]}}
    if version is not None:
        old["version"] = version
    new = {"version": 2, "units": old["units"], "scope": {"positions": "last", "decode_steps": [0, 2]}}
    assert InterventionSpec.parse(old) == InterventionSpec.parse(new) == InterventionSpec.from_json(json.dumps(old))
    assert InterventionSpec.parse(old).scope.decode_steps == [0, 2]
    assert json.loads(InterventionSpec.parse(old).canonical_json())["version"] == 2


# ------------------------------------------------------------------------------------- the dial: strength and ranges

FIXTURE = __import__("pathlib").Path(__file__).parents[1] / "app" / "fixtures" / "findings_spec_v1.json"
FC1 = "text_decoder.layers.0.ffn.fc1"


def fc1_spec(value: dict, **kw) -> dict:
    return {"units": {"kind": "explicit", "units": [{"module": FC1, "channel": c} for c in range(0, 64, 2)]}, "value": value, **kw}


def test_saved_version_1_findings_parse_with_the_dials_defaults_and_keep_their_digest():
    """The fixture's findings were saved before strength and position ranges existed: they read as strength 1,
    their canonical JSON names neither, so their digests (cache keys, share links) are what they were."""
    specs = [f["spec"] for f in json.loads(FIXTURE.read_text())["findings"] if f.get("spec")]
    assert specs
    for raw in specs:
        spec = InterventionSpec.parse(raw)
        assert spec.strength == 1.0 and spec.scope.positions == raw["scope"]["positions"]
        canonical = json.loads(spec.canonical_json())
        assert "strength" not in canonical and canonical["version"] == 2
        assert InterventionSpec.parse({**raw, "strength": 1.0}).digest() == spec.digest()


def test_strength_and_position_ranges_round_trip_and_change_the_digest():
    base = InterventionSpec.parse(fc1_spec({"kind": "zero"}))
    dialled = InterventionSpec.parse(fc1_spec({"kind": "zero"}, strength=0.5, scope={"positions": {"start": 2, "stop": 5}}))
    assert InterventionSpec.from_json(dialled.canonical_json()) == dialled
    assert json.loads(dialled.canonical_json())["strength"] == 0.5
    assert json.loads(dialled.canonical_json())["scope"]["positions"] == {"start": 2, "stop": 5}
    assert dialled.digest() != base.digest()
    open_range = InterventionSpec.parse(fc1_spec({"kind": "zero"}, scope={"positions": {"start": 3}}))
    assert open_range.scope.positions.stop is None


@pytest.mark.parametrize("extra, field, text", [
    ({"strength": 101}, "strength", "less than or equal to 100"),
    ({"strength": "1"}, "strength", "valid number"),
    ({"scope": {"positions": {"start": 4, "stop": 4}}}, "scope.positions", "greater than start"),
    ({"scope": {"positions": {"start": -1}}}, "scope.positions", "start"),
    ({"scope": {"positions": {"from": 1}}}, "scope.positions", "start: required field is missing"),
    ({"scope": {"positions": {"start": 1, "end": 3}}}, "scope.positions", "end: unknown field"),
    ({"scope": {"positions": "first"}}, "scope.positions", "expected 'all', 'last' or a range"),
])
def test_bad_dial_settings_are_spec_errors_naming_the_field(extra, field, text):
    with pytest.raises(SpecError) as info:
        InterventionSpec.parse(fc1_spec({"kind": "zero"}, **extra))
    assert info.value.field == field and text in info.value.reason


@pytest.mark.parametrize("use_cache", [True, False])
def test_strength_zero_is_the_baseline_exactly_and_strength_one_the_plain_overwrite(tiny_bundle, tiny_registry, text_inputs, use_cache):
    value = {"kind": "constant", "value": 3.0}
    base = generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=use_cache)
    zero = resolve(explicit(tiny_registry, is_decoder_fc1, value, strength=0.0), tiny_registry, None)
    assert_same(generate_with(tiny_bundle, tiny_registry, zero, text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=use_cache), base)
    full = generate_with(tiny_bundle, tiny_registry, resolve(explicit(tiny_registry, is_decoder_fc1, value), tiny_registry, None),
                         text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=use_cache)
    one = generate_with(tiny_bundle, tiny_registry, resolve(explicit(tiny_registry, is_decoder_fc1, value, strength=1.0), tiny_registry, None),
                        text_inputs, "eng", max_new_tokens=MAX_NEW, use_cache=use_cache)
    assert_same(one, full)
    assert not torch.equal(full.scores, base.scores)


def decoder_forward(bundle, inputs, n_positions: int = 5):
    """One uncached decoder forward over a fixed prefix (every position at once), for position-exact checks."""
    prefix = torch.tensor([[bundle.tokenizer.eos_token_id, bundle.tokenizer.convert_tokens_to_ids("__eng__"), 5, 6, 7][:n_positions]])
    with torch.no_grad():
        bundle.model(**inputs, decoder_input_ids=prefix, use_cache=False)


def fc1_outputs(bundle, registry, inputs, spec) -> torch.Tensor:
    resolved = None if spec is None else resolve(spec, registry, None)
    with intervene(bundle, registry, resolved):
        seen, handle = capture(bundle.model, FC1)
        try:
            decoder_forward(bundle, inputs)
        finally:
            handle.remove()
    return seen[0][0]


@pytest.mark.parametrize("strength", [0.5, 2.0, -1.0])
def test_strength_moves_each_chosen_channel_that_far_toward_the_value(tiny_bundle, tiny_registry, text_inputs, strength):
    base = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, None)
    hit = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, fc1_spec({"kind": "constant", "value": 3.0}, strength=strength))
    chosen = torch.arange(0, 64, 2)
    torch.testing.assert_close(hit[:, chosen], base[:, chosen] + strength * (3.0 - base[:, chosen]))
    others = torch.arange(1, 64, 2)
    assert torch.equal(hit[:, others], base[:, others])


def test_strength_scales_a_scale_factor_toward_the_identity(tiny_bundle, tiny_registry, text_inputs):
    base = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, None)
    hit = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, fc1_spec({"kind": "scale", "factor": 3.0}, strength=0.5))
    chosen = torch.arange(0, 64, 2)
    torch.testing.assert_close(hit[:, chosen], 2.0 * base[:, chosen])


@pytest.mark.parametrize("positions, written", [
    ("last", [1, 2, 3, 4]),
    ({"start": 1, "stop": 3}, [1, 2]),
    ({"start": 3}, [3, 4]),
    ("all", [0, 1, 2, 3, 4]),
])
def test_positions_change_only_the_chosen_decoder_positions(tiny_bundle, tiny_registry, text_inputs, positions, written):
    """`last` is each decoding step's newest position (all but `</s>`, which shares step 0 with the language token), so
    an uncached forward over five positions writes 1-4 and a cached step writes only its one new position."""
    base = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, None)
    hit = fc1_outputs(tiny_bundle, tiny_registry, text_inputs, fc1_spec({"kind": "constant", "value": 3.0}, scope={"positions": positions}))
    changed = (hit != base).any(-1)
    assert torch.nonzero(changed).flatten().tolist() == written
    assert torch.all(hit[written][:, ::2] == 3.0)


def test_a_position_range_under_caching_writes_only_the_forwards_that_hold_it(tiny_bundle, tiny_registry, text_inputs):
    """Cached decoding runs position 0-1 at step 0, then one position per step: a range [3, 5) writes steps 2 and 3."""
    resolved = resolve(fc1_spec({"kind": "constant", "value": 2.5}, scope={"positions": {"start": 3, "stop": 5}}), tiny_registry, None)
    with intervene(tiny_bundle, tiny_registry, resolved):
        seen, handle = capture(tiny_bundle.model, FC1)
        try:
            generate_with(tiny_bundle, tiny_registry, None, text_inputs, "eng", max_new_tokens=6, speech=False)
        finally:
            handle.remove()
    written = [bool(torch.all(o[0, :, ::2] == 2.5)) for o in seen]
    assert written == [False, False, True, True, False, False][: len(seen)]
