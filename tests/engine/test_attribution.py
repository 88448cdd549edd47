"""Token attribution on the tiny model: the estimate is the gradient term, the pass matches generation, verification
forces units exactly as the intervention engine does, and bad inputs are named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuron_atlas.engine import attribution as attr
from neuron_atlas.engine.interventions import (
    STATISTICS,
    ConstantValue,
    InMemoryStats,
    InterventionSpec,
    ScaleValue,
    SpecError,
    StatisticValue,
    ZeroValue,
    generate_with,
    intervene,
    prepare_inputs,
    resolve,
)

TEXT = "Le train part à sept heures."
TGT = "eng"
TOKEN = 2
#: An intervention that changes the tiny model's output (the API tests use it too).
SPEC = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(8)]},
        "value": {"kind": "constant", "value": 25.0}}


@pytest.fixture(scope="module")
def text_inputs(tiny_bundle):
    return prepare_inputs(tiny_bundle, text=TEXT, src_lang="fra")


@pytest.fixture(scope="module")
def generated(tiny_bundle, tiny_registry, text_inputs):
    return generate_with(tiny_bundle, tiny_registry, None, text_inputs, TGT, max_new_tokens=8)


@pytest.fixture(scope="module")
def sequence(generated):
    return attr.target_sequence(generated.sequences[0].tolist(), TOKEN)


@pytest.fixture(scope="module")
def stats(tiny_registry):
    """Concept 3 has statistics for every unit but the text encoder's (NaN there)."""
    rng = np.random.default_rng(3)
    n = tiny_registry.n_units
    values = {s: rng.normal(size=n).astype(np.float32) for s in STATISTICS}
    enc = tiny_registry.stack_ranges["text_encoder"]
    for v in values.values():
        v[enc.start : enc.stop] = np.nan
    return InMemoryStats(tiny_registry, {3: rng.random(n)}, {3: values})


def _zero(registry):
    return attr.reference_values(ZeroValue(), registry, None, None)


def test_logprob_is_the_generated_step_and_only_run_stacks_are_scored(tiny_bundle, tiny_registry, text_inputs, generated, sequence):
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, _zero(tiny_registry))
    step_scores = generated.scores[0, TOKEN]
    assert found.token_id == generated.token_ids[0][TOKEN] == int(step_scores.argmax())
    assert found.objective == found.logprob == pytest.approx(float(torch.log_softmax(step_scores, -1)[found.token_id]), abs=1e-4)
    scored = np.isfinite(found.estimates)
    speech = tiny_registry.stack_ranges["speech_encoder"]
    assert not scored[speech.start : speech.stop].any()
    for stack in ("text_encoder", "text_decoder"):
        r = tiny_registry.stack_ranges[stack]
        assert scored[r.start : r.stop].all(), stack
    assert found.positions["decoder"] == len(sequence) - 1
    # the gradient is taken of activations only: parameters keep needing gradients afterwards
    assert all(p.requires_grad for p in tiny_bundle.model.parameters())


def test_estimate_is_the_first_order_change(tiny_bundle, tiny_registry, text_inputs, sequence):
    """With a reference a hair away from each unit's own value (scale 1 + 1e-3), the estimate must equal the change
    measured by forcing, unit by unit: this checks the gradients against finite differences through the model."""
    ref = attr.reference_values(ScaleValue(factor=1.001), tiny_registry, None, None)
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref)
    top = attr.rank_units(found.estimates, 12)
    _, actual = attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref, [top[i : i + 1] for i in range(12)])
    np.testing.assert_allclose(found.estimates[top], actual, rtol=0.05, atol=2e-6)


def test_versus_token_attributes_the_log_odds(tiny_bundle, tiny_registry, text_inputs, sequence):
    ref = attr.reference_values(ScaleValue(factor=1.001), tiny_registry, None, None)
    plain = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref)
    versus = 7 if sequence[-1] != 7 else 8
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref, versus_id=versus)
    assert found.logprob == plain.logprob and found.objective != found.logprob
    top = attr.rank_units(found.estimates, 8)
    base, actual = attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref,
                                       [top[i : i + 1] for i in range(8)], versus_id=versus)
    assert base == pytest.approx(found.objective, abs=1e-4)
    np.testing.assert_allclose(found.estimates[top], actual, rtol=0.05, atol=2e-6)


def test_zero_reference_ranking_is_confirmed_by_forcing(tiny_bundle, tiny_registry, text_inputs, sequence):
    ref = _zero(tiny_registry)
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref)
    top = attr.rank_units(found.estimates, 20)
    base, actual = attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref,
                                       [top[i : i + 1] for i in range(20)] + [top], batch_rows=8)
    assert base == pytest.approx(found.objective, abs=1e-4)
    corr = attr.correlation(found.estimates[top], actual[:20])
    assert corr["n"] == 20 and corr["pearson"] > 0.9 and corr["spearman"] > 0.8, corr
    assert np.sign(actual[20]) == np.sign(found.estimates[top].sum())
    alone, nothing = attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref, [])
    assert alone == pytest.approx(found.objective, abs=1e-4) and nothing.shape == (0,)


def test_verification_forces_like_the_intervention_engine(tiny_bundle, tiny_registry, text_inputs, sequence, stats):
    """Forcing a set to a statistic in a verification row equals an explicit InterventionSpec applied by `intervene`,
    on top of the run's own intervention."""
    run = resolve(SPEC, tiny_registry, None)
    ref = attr.reference_values(StatisticValue(kind="off_mean"), tiny_registry, stats, 3)
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref, run)
    units = attr.rank_units(found.estimates, 5)
    base, actual = attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref, [units], run)
    assert base == pytest.approx(found.objective, abs=1e-4)
    refs = [{"module": tiny_registry.site_of_unit(int(u))[0].key, "channel": tiny_registry.site_of_unit(int(u))[1]} for u in units]
    forced = resolve(InterventionSpec(units={"kind": "explicit", "units": refs}, value={"kind": "off_mean"}, stats_concept_id=3),
                     tiny_registry, stats)
    ids = torch.tensor([sequence[:-1]])
    with torch.no_grad(), intervene(tiny_bundle, tiny_registry, run), intervene(tiny_bundle, tiny_registry, forced):
        logits = tiny_bundle.model(**text_inputs, decoder_input_ids=ids, use_cache=False).logits[0, -1]
    want = float(torch.log_softmax(logits.float(), -1)[sequence[-1]]) - base
    assert actual[0] == pytest.approx(want, abs=1e-4)
    assert abs(actual[0]) > 1e-4


def test_speech_input_scores_the_speech_encoder(tiny_bundle, tiny_registry):
    t = np.arange(16000) / 16000
    inputs = prepare_inputs(tiny_bundle, audio=(0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    out = generate_with(tiny_bundle, tiny_registry, None, inputs, TGT, max_new_tokens=4)
    seq = attr.target_sequence(out.sequences[0].tolist(), 1)
    ref = _zero(tiny_registry)
    found = attr.attribute_token(tiny_bundle, tiny_registry, inputs, seq, ref)
    speech = tiny_registry.stack_ranges["speech_encoder"]
    text = tiny_registry.stack_ranges["text_encoder"]
    assert np.isfinite(found.estimates[speech.start : speech.stop]).all()
    assert not np.isfinite(found.estimates[text.start : text.stop]).any()
    top = attr.rank_units(found.estimates[speech.start : speech.stop], 3) + speech.start
    _, actual = attr.verify_forcing(tiny_bundle, tiny_registry, inputs, seq, ref, [top[:1]])
    assert np.sign(actual[0]) == np.sign(found.estimates[top[0]])


def test_statistic_reference_leaves_units_without_a_value_unscored(tiny_bundle, tiny_registry, text_inputs, sequence, stats):
    ref = attr.reference_values(StatisticValue(kind="on_p50"), tiny_registry, stats, 3)
    assert ref.describe()["units_with_value"] == tiny_registry.n_units - tiny_registry.stack_width("text_encoder")
    found = attr.attribute_token(tiny_bundle, tiny_registry, text_inputs, sequence, ref)
    enc = tiny_registry.stack_ranges["text_encoder"]
    assert not np.isfinite(found.estimates[enc.start : enc.stop]).any()
    with pytest.raises(ValueError, match="without a reference value"):
        attr.verify_forcing(tiny_bundle, tiny_registry, text_inputs, sequence, ref, [np.array([enc.start])])


@pytest.mark.parametrize("value, concept, field, needle", [
    (StatisticValue(kind="on_p50"), None, "reference_concept_id", "name the concept"),
    (StatisticValue(kind="off_mean"), 99, "reference_concept_id", "unknown concept 99"),
    (ZeroValue(), 3, "reference_concept_id", "only used with a statistic"),
])
def test_reference_errors_name_the_field(tiny_registry, stats, value, concept, field, needle):
    with pytest.raises(SpecError) as err:
        attr.reference_values(value, tiny_registry, stats, concept)
    assert err.value.field == field and needle in err.value.reason


def test_constant_reference_and_token_range(tiny_registry):
    ref = attr.reference_values(ConstantValue(value=2.5), tiny_registry, None, None)
    assert ref.values.shape == (tiny_registry.n_units,) and set(np.unique(ref.values)) == {2.5}
    seq = [2, 5, 7, 9]
    assert attr.target_sequence(seq, 1) == seq
    with pytest.raises(IndexError, match=r"token_index 2 is out of range: the output has 2 tokens \(0\.\.1\)"):
        attr.target_sequence(seq, 2)


def test_rank_units_and_layer_summary(tiny_registry):
    est = np.full(tiny_registry.n_units, np.nan)
    dec = tiny_registry.stack_ranges["text_decoder"]
    est[dec.start : dec.start + 6] = [0.5, -2.0, 0.5, 0.0, 1.0, -0.1]
    assert attr.rank_units(est, 3).tolist() == [dec.start + 1, dec.start + 4, dec.start]
    assert attr.rank_units(est, 100).tolist()[-1] == dec.start + 3
    summary = attr.layer_summary(tiny_registry, est, per_layer=2)
    assert len(summary) == 1
    row = summary[0]
    assert row["stack"] == "text_decoder" and row["n_units"] == 6
    assert row["sum_estimate"] == pytest.approx(-0.1) and row["sum_abs_estimate"] == pytest.approx(4.1)
    assert [u["unit_id"] for u in row["top"]] == [dec.start + 1, dec.start + 4]
    site, channel = tiny_registry.site_of_unit(dec.start + 1)
    assert row["top"][0]["site"] == site.key and row["top"][0]["channel"] == channel
    assert attr.correlation(np.array([1.0, 2.0]), np.array([1.0, 2.0]))["pearson"] is None


# ------------------------------------------------------------------------------------------------- demo model


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    """The demo model and a small run with its en→X language concepts at step 2 (the README lab link's units)."""
    from precompute.config import AnalysisConfig, EvaluateConfig, RunConfig
    from precompute.corpus.config import CorpusConfig
    from precompute.pipeline import run_precompute

    from backend.store.reader import StoreReader, StoreStats
    from neuron_atlas.engine.model.loading import load_model
    from neuron_atlas.engine.model.unit_sites import SiteRegistry

    demo = load_model("demo", device="cpu")
    tmp = tmp_path_factory.mktemp("attribution-demo")
    cfg = RunConfig(name="attribution", model="demo", device="cpu", tasks=["en2x_t2tt"], steps=[2], batch_size=32,
                    store=tmp / "atlas.duckdb", work_dir=tmp / "work", corpus=CorpusConfig(source="builtin"),
                    analysis=AnalysisConfig(ks=[250]), evaluate=EvaluateConfig(enabled=False))
    result = run_precompute(cfg, progress=False, bundle=demo)
    reader = StoreReader(result.store)
    concepts = reader.concepts(result.run_id, kind="language", task="en2x_t2tt", step=2, language="fra")
    return demo, SiteRegistry.from_model(demo.model), StoreStats(reader, result.run_id), int(concepts["concept_id"].iloc[0])


@pytest.mark.slow
def test_demo_steered_token_names_french_control_units(control_run):
    """The README's lab link: English → German with French's en→X control units (top + bottom 250, text, step 2)
    forced to on_p50 comes out French. Attributing the first steered token's baseline (German) token, with the
    steering's own value as reference and its log-odds against the French token it became, ranks French control
    units among the first 100 at least twice as often as chance (measured: 9, chance 3.1), and the French set's
    summed estimate pushes the log-odds towards French, as forcing the set really does."""
    demo, registry, stats, fra = control_run
    steer = resolve(InterventionSpec(units={"kind": "concept", "concept_id": fra, "set": "both", "k": 250, "stack": "text_decoder"}),
                    registry, stats)
    inputs = prepare_inputs(demo, text="My mother works at the hospital.", src_lang="eng")
    base = generate_with(demo, registry, None, inputs, "deu", max_new_tokens=32)
    steered = generate_with(demo, registry, steer, inputs, "deu", max_new_tokens=32)
    assert base.text.startswith("Meine") and steered.text.startswith("Ma mère")
    b, s = base.token_ids[0], steered.token_ids[0]
    first = next(i for i, (x, y) in enumerate(zip(b, s)) if x != y)
    seq = attr.target_sequence(base.sequences[0].tolist(), first)
    ref = attr.reference_values(StatisticValue(kind="on_p50"), registry, stats, fra)
    found = attr.attribute_token(demo, registry, inputs, seq, ref, versus_id=s[first])
    french = np.zeros(registry.n_units, dtype=bool)
    french[steer.unit_ids] = True
    scored = np.isfinite(found.estimates)
    chance = 100 * french.sum() / scored.sum()
    assert french[attr.rank_units(found.estimates, 100)].sum() >= 2 * chance
    _, actual = attr.verify_forcing(demo, registry, inputs, seq, ref, [steer.unit_ids], versus_id=s[first])
    assert found.estimates[french].sum() < -1.0 and actual[0] < -1.0
