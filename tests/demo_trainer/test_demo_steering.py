"""Tests of the demo model's steerability objective: unit selection, forcing semantics, gradients, clean removal,
and what the card and reproduce line say about it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from neuron_atlas.engine.model.tokenizer import lang_token
from neuron_atlas.engine.example import CORPUS_LANGUAGES
from neuron_atlas.engine.sentences import SENTENCES
from neuron_atlas.demo_trainer.card import reproduce_line, steering_lines
from neuron_atlas.demo_trainer.steering import SteeringConfig, SteeringObjective, selective_units


def test_selective_units_finds_planted_high_and_low_units():
    g = torch.Generator().manual_seed(0)
    pooled = torch.randn(40, 300, generator=g)
    positive = torch.zeros(40, dtype=torch.bool)
    positive[:8] = True
    pooled[positive, 17] += 5.0
    pooled[positive, 230] -= 5.0
    chosen = selective_units(pooled, positive, 5)
    assert chosen.shape == (10,) and len(set(chosen.tolist())) == 10
    assert chosen[0].item() == 17 and chosen[-1].item() == 230


@pytest.fixture
def objective():
    from neuron_atlas.engine.model.loading import build_tiny_random

    model, tok = build_tiny_random(seed=1)
    languages = CORPUS_LANGUAGES
    batcher = SimpleNamespace(
        lang_id={lang: tok.convert_tokens_to_ids(lang_token(lang)) for lang in languages},
        content={(s.id, lang): tok(s.text(lang), add_special_tokens=False)["input_ids"]
                 for s in SENTENCES[:10] for lang in languages},
        text_sentences=SENTENCES[:10], others=[lang for lang in languages if lang != "eng"],
        eos=tok.eos_token_id, pad=tok.pad_token_id)
    obj = SteeringObjective(model.train(), batcher, SteeringConfig(sentences=3, ks=(5,)), seed=0)
    yield obj
    obj.remove()


def _decode(model, batcher, rows: int = 2):
    ids = torch.tensor([[batcher.eos, batcher.lang_id["fra"], 40, 41]] * rows)
    states = torch.randn(rows, 7, model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    return model.text_decoder(input_ids=ids, encoder_hidden_states=states).last_hidden_state


def test_forcing_overwrites_exactly_the_masked_units_and_rows(objective):
    model, hooks = objective.model, objective.hooks
    assert hooks.sites[-1].module == "text_decoder.layer_norm"
    assert all(s.domain == "decoder" for s in hooks.sites)
    with torch.no_grad():
        plain = _decode(model, objective.batcher)
        lo, hi = hooks.bounds[-1]
        mask = torch.zeros(2, hooks.n_units, dtype=torch.bool)
        mask[0, lo:hi] = True
        fill = torch.arange(hooks.n_units, dtype=torch.float32)
        hooks.mode, hooks.mask, hooks.fill = "force", mask, fill
        forced = _decode(model, objective.batcher)
        hooks.mode = None
        again = _decode(model, objective.batcher)
    assert torch.equal(forced[0], fill[lo:hi].expand_as(forced[0]))
    assert torch.equal(forced[1], plain[1])
    assert torch.equal(again, plain)


def test_captured_columns_and_forced_columns_name_the_same_units(objective):
    """Modules run in another order than the registry lists them (pre-norms first, q before k and v): a captured
    column j and a forced column j must both be unit j of the registry order."""
    from neuron_atlas.engine.model.hooks import HookPoints

    model, hooks = objective.model, objective.hooks
    seen: dict[str, torch.Tensor] = {}
    with torch.no_grad(), HookPoints(model, hooks.sites, lambda site, out: seen.__setitem__(site.key, out.clone())):
        hooks.mode = "capture"
        _decode(model, objective.batcher)
        hooks.mode = None
        pooled = hooks.capture()
        for site, (lo, hi) in zip(hooks.sites, hooks.bounds):
            assert torch.allclose(pooled[:, lo:hi], seen[site.key].float().mean(dim=1)), site.key
        index = next(i for i, s in enumerate(hooks.sites) if s.key.endswith("layers.0.self_attn_layer_norm"))
        assert index > 0
        lo = hooks.bounds[index][0]
        mask = torch.zeros(2, hooks.n_units, dtype=torch.bool)
        mask[:, lo + 3] = True
        hooks.mode, hooks.mask, hooks.fill = "force", mask, torch.arange(hooks.n_units, dtype=torch.float32)
        _decode(model, objective.batcher)
        hooks.mode = None
    written = seen[hooks.sites[index].key]
    assert torch.all(written[..., 3] == lo + 3) and not torch.all(written[..., 4] == lo + 4)


def test_loss_is_finite_trains_the_decoder_and_removal_leaves_no_hooks(objective):
    model = objective.model
    loss = objective.loss()
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("text_decoder.layers.")]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        before = _decode(model, objective.batcher)
    objective.remove()
    assert all(not m._forward_hooks for m in model.text_decoder.modules())
    with torch.no_grad():
        assert torch.equal(_decode(model, objective.batcher), before)


def test_card_says_steering_is_trained_in_and_the_reproduce_line_repeats_it():
    cfg = {"minutes": 12.0, "source_language_labels": True, "steer_weight": 1.0, "lr": 3e-4}
    report = {"train": {"steps": 10, "seconds": 60.0}, "train_config": cfg,
              "earlier_runs": [{"train": {"steps": 5, "seconds": 30.0},
                                "train_config": {"minutes": 50.0, "source_language_labels": False, "lr": 1e-3}}]}
    line = reproduce_line(report)
    assert "--out run1 --minutes 50 --first-label target`" in line
    assert "--out assets/demo-model --minutes 12 --steer-weight 1 --init-from run1`" in line
    text = " ".join(steering_lines(report))
    assert "Steerability is trained in" in text and "not evidence that it arises by itself" in text
    assert steering_lines({"train_config": {"steer_weight": 0.0}}) == []
