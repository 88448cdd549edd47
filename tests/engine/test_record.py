"""Step-aware recording: pooling, padding, modes, and that recording never changes what the model generates."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import soundfile as sf
import torch

import neuron_atlas.engine.record as record
from neuron_atlas.engine.model.hooks import HookPoints
from neuron_atlas.engine.example import Example
from neuron_atlas.engine.record import FAITHFUL_TEXT_LENGTH, encode_inputs, length_buckets, record_batch
from neuron_atlas.engine.tasks import task_items

TEXTS = {
    "eng": ["The train leaves at seven.", "The sky is blue.", "My sister likes green tea.", "See you tomorrow morning."],
    "fra": ["Le train part à sept heures.", "Le ciel est bleu.", "Ma sœur aime le thé vert.", "À demain matin."],
}
# Lengths chosen so that some utterances end mid-window of the adapter's stride-8 pooling convolution.
SAMPLES = [16000, 13000, 9100, 20333]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    examples = []
    for lang, texts in TEXTS.items():
        for i, (text, n) in enumerate(zip(texts, SAMPLES)):
            path = folder / f"{lang}{i}.wav"
            sf.write(path, (0.3 * rng.standard_normal(n)).astype(np.float32), 16000)
            examples.append(Example(f"{lang}{i}", f"s{i}", lang, text, path, TEXTS["eng"][i]))
    return examples


def _compare_batched_to_single(bundle, registry, items):
    batched = record_batch(bundle, registry, items, mode="clean")
    worst = 0.0
    for i, it in enumerate(items):
        single = record_batch(bundle, registry, [it], mode="clean")
        assert single.generated[0] == batched.generated[i]
        for stack, arr in single.encoder.items():
            worst = max(worst, float(np.abs(arr[0] - batched.encoder[stack][i]).max()))
        for s, arr in single.decoder.items():
            worst = max(worst, float(np.abs(arr[0] - batched.decoder[s][i]).max()))
    return worst


@pytest.mark.parametrize("task", ["s2tt", "t2tt", "en2x_s2tt", "asr"])
def test_clean_batched_pooling_equals_batch_of_one(tiny_bundle, tiny_registry, corpus, task):
    items = task_items(task, corpus, ["eng", "fra"])
    items = [it for it in items if it.label == "fra"]
    assert len(items) == 4
    assert _compare_batched_to_single(tiny_bundle, tiny_registry, items) < 1e-5


def test_adapter_leaks_padding_without_the_guard(tiny_bundle, tiny_registry, corpus, monkeypatch):
    """The reason for AdapterPaddingGuard: without it the last adapter frame sees padding in a batch."""
    items = [it for it in task_items("s2tt", corpus, ["fra"])]
    monkeypatch.setattr(record, "AdapterPaddingGuard", lambda model: nullcontext())
    assert _compare_batched_to_single(tiny_bundle, tiny_registry, items) > 1e-3


def test_outputs_have_registry_widths_and_no_gaps(tiny_bundle, tiny_registry, corpus):
    items = task_items("t2tt", corpus, ["fra"])
    rec = record_batch(tiny_bundle, tiny_registry, items, steps=(2, 7, 12))
    assert rec.encoder["text_encoder"].shape == (4, tiny_registry.stack_width("text_encoder"))
    assert set(rec.decoder) == {2, 7, 12}
    for arr in [*rec.encoder.values(), *rec.decoder.values()]:
        assert np.isfinite(arr).all()
    # decoder units depend on the step; encoder units are recorded once
    assert not np.allclose(rec.decoder[2], rec.decoder[12])
    for ids, n in zip(rec.generated, rec.prefix_lengths[12]):
        assert ids[0] == tiny_bundle.tokenizer.eos_token_id
        assert ids[1] == tiny_bundle.tokenizer.convert_tokens_to_ids("__eng__")
        assert n == min(len(ids), 12)


def test_faithful_mode_reproduces_reference_quirks(tiny_bundle, tiny_registry, corpus):
    items = task_items("t2tt", corpus, ["fra"])[:1]
    inputs = encode_inputs(tiny_bundle, items, "faithful")
    ids = inputs["input_ids"][0]
    assert ids.shape[0] == FAITHFUL_TEXT_LENGTH
    tokens = tiny_bundle.tokenizer.convert_ids_to_tokens(ids[:2].tolist())
    # target mode of a fresh tokenizer: </s> and its configured tgt_lang (eng for the tiny model), not the text's
    assert tokens == ["</s>", "__eng__"]
    assert (ids == tiny_bundle.tokenizer.pad_token_id).sum() > 200
    clean = encode_inputs(tiny_bundle, items, "clean")["input_ids"][0]
    assert tiny_bundle.tokenizer.convert_ids_to_tokens(int(clean[0])) == "__fra__"
    faithful = record_batch(tiny_bundle, tiny_registry, items, mode="faithful")
    cleanrec = record_batch(tiny_bundle, tiny_registry, items, mode="clean")
    assert faithful.input_ids[0] == ids.tolist() and cleanrec.input_ids[0] == clean.tolist()
    # pads are in the faithful text-encoder mean, so the two modes disagree
    assert np.abs(faithful.encoder["text_encoder"] - cleanrec.encoder["text_encoder"]).max() > 1e-3


def test_faithful_mode_records_one_example_at_a_time(tiny_bundle, tiny_registry, corpus):
    with pytest.raises(ValueError, match="one example at a time"):
        record_batch(tiny_bundle, tiny_registry, task_items("t2tt", corpus, ["fra"])[:2], mode="faithful")


def test_recording_hooks_leave_generation_bit_identical(tiny_bundle, tiny_registry, corpus):
    model = tiny_bundle.model
    enc = tiny_bundle.tokenizer([TEXTS["fra"][0]], src_lang="fra", return_tensors="pt")
    kwargs = dict(tgt_lang="eng", generate_speech=False, max_new_tokens=12, output_scores=True, return_dict_in_generate=True)
    plain = model.generate(**enc, **kwargs)
    seen = []
    with HookPoints(model, tiny_registry.sites, lambda site, out: seen.append(site.key)):
        hooked = model.generate(**enc, **kwargs)
    assert seen, "hooks never fired"
    assert torch.equal(plain.sequences, hooked.sequences)
    assert all(torch.equal(a, b) for a, b in zip(plain.scores, hooked.scores))


def test_length_buckets_bound_padding_and_keep_targets_apart(corpus):
    items = task_items("en2x_t2tt", corpus, ["eng", "fra"])
    lengths = [10, 30, 11, 12]
    batches = length_buckets(items, lengths, max_batch=8)
    assert sorted(it.index for b in batches for it in b) == [it.index for it in items]
    for b in batches:
        ls = [lengths[it.index] for it in b]
        assert max(ls) <= 1.25 * min(ls)
        assert len({it.tgt_lang for it in b}) == 1


def test_bad_mode_is_rejected(tiny_bundle, tiny_registry, corpus):
    with pytest.raises(ValueError, match="unknown recording mode 'sloppy'"):
        record_batch(tiny_bundle, tiny_registry, task_items("t2tt", corpus, ["fra"])[:1], mode="sloppy")
