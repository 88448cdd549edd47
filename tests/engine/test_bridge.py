"""The encoder-frame ↔ decoder-token bridge: eager cross-attention weights for one request only, equal to what eager
attention computes; column geometry; averaging, peaks and span readers; and, on the demo model, word alignment
against espeak-ng's word timings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuron_atlas.engine import bridge
from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH
from neuron_atlas.engine.interventions import generate_with, prepare_inputs
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from neuron_atlas.engine.sentences import SENTENCES
from neuron_atlas.engine.tts import VOICES, synthesize, synthesize_with_words
from neuron_atlas.engine.unit_trace import frame_times


@pytest.fixture(scope="module")
def speech():
    return synthesize("The train leaves at seven.", VOICES["eng"][0])


@pytest.fixture(scope="module")
def kv_unit(tiny_registry):
    site = next(s for s in tiny_registry.sites if s.domain == "encoder_out" and s.layer == 1 and s.key.endswith("v_proj"))
    return site, 5


@pytest.fixture(scope="module")
def traced(tiny_bundle, tiny_registry, speech, kv_unit):
    inputs = prepare_inputs(tiny_bundle, audio=speech)
    site, channel = kv_unit
    return inputs, bridge.trace_bridge(tiny_bundle, tiny_registry, inputs, "eng", 12, unit_id=site.offset + channel,
                                       duration_s=len(speech) / 16000)


def _all_eager_weights(bundle, inputs, sequences):
    """Cross-attention weights with the whole model on the eager path (config switched for the entire model)."""
    model = bundle.model
    kept: dict[int, torch.Tensor] = {}
    handles = [layer.cross_attention.register_forward_hook(lambda m, a, out, i=i: kept.__setitem__(i, out[1]))
               for i, layer in enumerate(model.text_decoder.layers)]
    saved = model.config._attn_implementation
    try:
        model.config._attn_implementation = "eager"
        with torch.no_grad(), AdapterPaddingGuard(model):
            out = model(**inputs, decoder_input_ids=sequences, use_cache=False)
    finally:
        model.config._attn_implementation = saved
        for h in handles:
            h.remove()
    return torch.stack([kept[i][0] for i in sorted(kept)]).float().numpy(), out.logits


def test_weights_equal_eager_attention_and_are_distributions(tiny_bundle, traced):
    inputs, tr = traced
    n = len(tr.token_ids)
    seq = generate_with(tiny_bundle, None, None, inputs, "eng", max_new_tokens=12).sequences[:, : DECODER_PROMPT_LENGTH + n]
    eager, _ = _all_eager_weights(tiny_bundle, inputs, seq)
    rows = slice(DECODER_PROMPT_LENGTH - 1, DECODER_PROMPT_LENGTH - 1 + n)
    assert tr.weights.shape == (tiny_bundle.config.decoder_layers, tiny_bundle.config.decoder_attention_heads, n,
                                eager.shape[-1])
    np.testing.assert_allclose(tr.weights, eager[:, :, rows], rtol=0, atol=1e-6)
    np.testing.assert_allclose(tr.weights.sum(-1), 1.0, atol=1e-5)
    assert tr.argmax_matches


def test_served_model_keeps_its_attention_path(tiny_bundle, tiny_registry, speech, traced):
    model = tiny_bundle.model
    assert model.config._attn_implementation == "sdpa"
    assert all(m.config is model.config for m in bridge.cross_attention_modules(model))
    with pytest.raises(RuntimeError, match="boom"):
        with bridge.eager_cross_attention(model):
            assert all(m.config._attn_implementation == "eager" for m in bridge.cross_attention_modules(model))
            assert model.config._attn_implementation == "sdpa"
            raise RuntimeError("boom")
    assert all(m.config is model.config for m in bridge.cross_attention_modules(model))


def test_tokens_are_the_models_own_greedy_output(tiny_bundle, traced):
    inputs, tr = traced
    out = generate_with(tiny_bundle, None, None, inputs, "eng", max_new_tokens=12)
    assert tr.token_ids == out.token_ids[0]
    assert tr.tokens == tiny_bundle.tokenizer.convert_ids_to_tokens(out.token_ids[0])


def test_unit_strip_is_the_projection_of_the_encoder_output(tiny_bundle, traced, kv_unit):
    inputs, tr = traced
    site, channel = kv_unit
    model = tiny_bundle.model
    with torch.no_grad(), AdapterPaddingGuard(model):
        enc = model.speech_encoder(input_features=inputs["input_features"], attention_mask=inputs["attention_mask"])[0]
        expected = model.get_submodule(site.module)(enc)[0, :, channel].numpy()
    assert tr.unit_values.shape == (tr.weights.shape[-1],)
    np.testing.assert_allclose(tr.unit_values, expected, rtol=1e-5, atol=1e-5)


def test_text_input_and_wrong_units_are_refused(tiny_bundle, tiny_registry):
    with pytest.raises(bridge.BridgeError, match="give speech input") as err:
        bridge.trace_bridge(tiny_bundle, tiny_registry, prepare_inputs(tiny_bundle, text="Hello.", src_lang="eng"), "eng", 4)
    assert err.value.field == "input"
    fc1 = tiny_registry.unit_id("text_decoder.layers.0.ffn.fc1", 0)
    with pytest.raises(bridge.BridgeError, match="not a cross-attention k_proj/v_proj unit"):
        bridge.check_unit(tiny_registry, fc1)
    with pytest.raises(bridge.BridgeError, match="out of range"):
        bridge.check_unit(tiny_registry, tiny_registry.n_units)


def test_average_peaks_and_span_readers(traced):
    _, tr = traced
    mean, layers, heads = bridge.average(tr, [1], [0, 1])
    np.testing.assert_allclose(mean, tr.weights[1].mean(axis=0), atol=1e-7)
    assert (layers, heads) == ([1], [0, 1])
    with pytest.raises(bridge.BridgeError, match="layers: 5 is out of range") as err:
        bridge.average(tr, [5])
    assert err.value.field == "layers"
    with pytest.raises(bridge.BridgeError, match="heads"):
        bridge.average(tr, None, [-1])
    pk = bridge.peaks(mean, tr.geometry)
    assert [p["column"] for p in pk] == mean.argmax(axis=1).tolist()
    assert all(p["start_s"] <= p["time_s"] <= p["end_s"] for p in pk)
    g = tr.geometry
    span = bridge.span_readers(mean, g, float(g.centres_s[1]) - 1e-6, float(g.centres_s[2]) + 1e-6)
    assert span["columns"] == [1, 2]
    np.testing.assert_allclose(span["mass"], mean[:, 1:3].sum(axis=1), atol=1e-7)
    assert span["peak_inside"] == [c in (1, 2) for c in mean.argmax(axis=1)]
    with pytest.raises(bridge.BridgeError, match="span_s"):
        bridge.span_readers(mean, g, 1.0, 0.5)


def test_column_geometry_matches_the_adaptor(tiny_bundle):
    cfg = tiny_bundle.config
    g = bridge.column_geometry(tiny_bundle.model, 6, duration_s=10.0)
    assert g.step_s == pytest.approx(cfg.adaptor_stride * 0.02)
    assert g.span_s == pytest.approx((cfg.adaptor_kernel_size - 1) * 0.02 + 0.035)
    np.testing.assert_allclose(g.centres_s, frame_times("speech_adapter", 6, tiny_bundle.model), atol=1e-4)
    np.testing.assert_allclose(np.diff(g.centres_s), g.step_s)
    assert (g.starts_s <= g.centres_s).all() and (g.centres_s <= g.ends_s).all()
    short = bridge.column_geometry(tiny_bundle.model, 6, duration_s=0.3)
    assert short.ends_s.max() == pytest.approx(0.3)


def test_word_timings_from_espeak_cover_the_audio():
    wave, words = synthesize_with_words("My sister likes green tea.", VOICES["eng"][0])
    assert [w.word for w in words] == ["My", "sister", "likes", "green", "tea"]
    assert words[0].start_s == pytest.approx(0.0, abs=0.05)
    assert words[-1].end_s == pytest.approx(len(wave) / 16000, abs=1e-4)  # timings are kept to 0.1 ms
    assert all(a.end_s == b.start_s and a.start_s < a.end_s for a, b in zip(words, words[1:]))


# ------------------------------------------------------------------------------------------------ demo model


@pytest.fixture(scope="module")
def demo():
    from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
    from neuron_atlas.engine.model.unit_sites import SiteRegistry

    bundle = load_model("demo", device="cpu")
    configure_cpu_threads(bundle)
    return bundle, SiteRegistry.from_model(bundle.model)


def _word_peaks(bundle, registry, text: str):
    """Per spoken word: its espeak span and the peak time of its first token's cross-attention (all layers and
    heads), for English speech transcribed to English (output words = input words); None when they differ."""
    wave, words = synthesize_with_words(text, VOICES["eng"][0])
    tr = bridge.trace_bridge(bundle, registry, prepare_inputs(bundle, audio=wave), "eng", 40, duration_s=len(wave) / 16000)
    starts = [i for i, t in enumerate(tr.tokens) if t.startswith("▁")]
    if tr.text.strip() != text.strip() or len(starts) != len(words):
        return None, tr
    mean, _, _ = bridge.average(tr)
    return [(w, float(tr.geometry.centres_s[int(mean[i].argmax())])) for w, i in zip(words, starts)], tr


def test_demo_each_word_peaks_on_its_own_stretch_of_speech(demo):
    """A built-in example (s005): every output word's peak column is centred within its spoken span, give or take
    one column step (160 ms, the resolution of the adaptor frames)."""
    bundle, registry = demo
    sentence = next(s for s in SENTENCES if s.texts["eng"] == "My father drinks coffee every morning.")
    pairs, tr = _word_peaks(bundle, registry, sentence.speech_text("eng"))
    assert pairs is not None, tr.text
    step = tr.geometry.step_s
    misses = [(w.word, w.start_s, w.end_s, t) for w, t in pairs if not w.start_s - step <= t <= w.end_s + step]
    assert not misses, misses
    times = [t for _, t in pairs]
    assert times == sorted(times)


@pytest.mark.slow
def test_demo_words_peak_on_their_speech_across_the_corpus(demo):
    """Over the first 12 built-in English sentences, at least 75% of output words peak within their spoken span
    ± one column, and at least twice as often as a column drawn at random would (`chance`, per word the share of
    columns centred in that window)."""
    bundle, registry = demo
    hits = total = 0
    chance = 0.0
    for sentence in SENTENCES[:12]:
        pairs, tr = _word_peaks(bundle, registry, sentence.speech_text("eng"))
        if pairs is None:
            continue
        step, centres = tr.geometry.step_s, tr.geometry.centres_s
        hits += sum(w.start_s - step <= t <= w.end_s + step for w, t in pairs)
        chance += sum(float(((centres >= w.start_s - step) & (centres <= w.end_s + step)).mean()) for w, _ in pairs)
        total += len(pairs)
    assert total >= 40
    print(f"demo word peaks within their span ± one column: {hits}/{total} = {hits / total:.2f} (chance {chance / total:.2f})")
    assert hits / total >= 0.75 and hits / total >= 2 * chance / total, (hits, total, chance)
