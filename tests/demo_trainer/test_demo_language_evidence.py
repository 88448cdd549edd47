"""Tests of the demo model's language-evidence objective: what the head reads, that silence cannot name a
language, that it trains the decoder's units, and that it leaves the model as it found it."""
from __future__ import annotations

import pytest
import torch

from neuron_atlas.demo_trainer.language_evidence import PREFIX_POSITIONS, LanguageEvidenceHead


@pytest.fixture
def model():
    from neuron_atlas.engine.model.loading import build_tiny_random

    model, _ = build_tiny_random(seed=1)
    return model.train()


def _decode(model, rows: int = 3, length: int = 5, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (rows, length), generator=g)
    states = torch.randn(rows, 7, model.config.hidden_size, generator=g)
    return model.text_decoder(input_ids=ids, encoder_hidden_states=states).last_hidden_state


def test_head_reads_post_relu_ffn_activations_of_the_prefix_only(model):
    head = LanguageEvidenceHead(model, n_languages=4)
    kept = {}
    fc1 = model.text_decoder.layers[0].ffn.fc1
    handle = fc1.register_forward_hook(lambda m, a, o: kept.__setitem__("out", o.detach()))
    _decode(model)
    handle.remove()
    assert head._captured[0].shape[1] == PREFIX_POSITIONS
    torch.testing.assert_close(head._captured[0].detach(), kept["out"][:, :PREFIX_POSITIONS])
    width = sum(layer.ffn.fc1.out_features for layer in model.text_decoder.layers)
    assert head.raw.shape == (4, width)
    head.remove()


def test_a_language_no_unit_fires_for_gets_a_zero_logit_and_cannot_win(model):
    """Bias-free, non-negative weights: with all evidence at zero every logit is 0 (uniform), however the weights
    are set, so no language can be the default that silence stands for."""
    head = LanguageEvidenceHead(model, n_languages=3)
    with torch.no_grad():
        head.raw.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(0))
    head._captured = [torch.full((2, PREFIX_POSITIONS, layer.ffn.fc1.out_features), -1.0)
                      for layer in model.text_decoder.layers]
    loss = head.loss(torch.tensor([0, 2]))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-6)
    assert all(c is None for c in head._captured)
    head.remove()


def test_loss_trains_the_decoder_units_and_removal_restores_the_model(model):
    head = LanguageEvidenceHead(model, n_languages=3)
    with torch.no_grad():
        head.raw.normal_(-4.0, 1.0, generator=torch.Generator().manual_seed(0))
    _decode(model)
    loss = head.loss(torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert head.raw.grad is not None and head.raw.grad.abs().sum() > 0
    assert model.text_decoder.layers[0].ffn.fc1.weight.grad.abs().sum() > 0
    head.remove()
    assert all(not layer.ffn.fc1._forward_hooks for layer in model.text_decoder.layers)


def test_card_describes_each_run_and_the_evidence_objective_and_reproduces_it():
    from neuron_atlas.demo_trainer.card import continuation_lines, evidence_lines, reproduce_line

    run1 = {"train": {"steps": 5, "seconds": 30.0},
            "train_config": {"minutes": 50.0, "source_language_labels": False, "lr": 1e-3, "text_phase": 0.08}}
    run2 = {"train": {"steps": 7, "seconds": 42.0},
            "train_config": {"minutes": 12.0, "source_language_labels": True, "lr": 3e-4, "text_phase": 0.0,
                             "steer_weight": 1.0}}
    report = {"train": {"steps": 9, "seconds": 60.0}, "earlier_runs": [run1, run2],
              "train_config": {"minutes": 14.0, "source_language_labels": True, "lr": 3e-4, "text_phase": 0.0,
                               "steer_weight": 1.0, "evidence_weight": 0.5}}
    lines = continuation_lines(report)
    assert lines[0].startswith("- Trained in 3 runs, 2.2 min of training in all")
    assert lines[1].startswith("  - run 1: from scratch, 5 steps") and "text-only first 8 %" in lines[1]
    assert lines[2].startswith("  - run 2: from run 1, 7 steps") and "steerability objective weight 1." in lines[2]
    assert lines[3] == ("  - run 3: from run 2, 9 steps in 1.0 min, peak lr 0.0003, steerability objective weight 1, "
                        "language-evidence objective weight 0.5.")
    line = reproduce_line(report)
    assert "--out run2 --minutes 12 --steer-weight 1 --init-from run1`" in line
    assert "--out assets/demo-model --minutes 14 --steer-weight 1 --evidence-weight 0.5 --init-from run2`" in line
    text = " ".join(evidence_lines(report))
    assert "weight 0.5" in text and "cannot win" in text and "the head is not saved" in text
    assert evidence_lines({"train_config": {"steer_weight": 1.0}, "earlier_runs": [run1, run2]}) == []
