"""Both recording modes against independent slow paths written here: one example at a time, plain forward hooks,
numpy means.

- faithful: the reference code's recording (fresh tokenizer `encode`, 256-token padding, `np.mean` over every
  position with its speech-encoder axis swap, its reader's majority-length filter);
- clean: the unmodified model at batch size 1 with the processor's defaults, pooled over valid positions.

The corpus has speech of odd and even frame counts, utterances longer than the tiny model's 32- and 64-channel
sites (one exactly 64 frames long), and a text over 256 tokens.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import duckdb
import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import SeamlessM4TFeatureExtractor, SeamlessM4TTokenizer

from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from precompute.activation_store import decoder_name, load_acts
from precompute.config import load_run_config
from precompute.pipeline import run_precompute

STEPS = (2, 7)
SR = 16000
#: speech-encoder frames of the s2tt utterances as the feature extractor gives them alone, per language. An utterance
#: at an odd index has an odd number of 10 ms filterbank frames, so its last frame is the extractor's padding frame
#: (masked, but read by the model). 16 of 20 are within the 32-channel sites' width (so the reader drops those sites:
#: under 90 % share one length), one equals the 64-channel sites' width (a convolution then averages over channels,
#: at the right length) and one is longer than every site (19 of 20 share the 64-channel sites' length: the reader
#: drops that example).
FRAMES = {"deu": [9, 12, 17, 20, 25, 30, 31, 32, 40, 70],
          "fra": [10, 13, 16, 21, 27, 29, 31, 32, 41, 64]}
LONG_TEXT = " ".join(["Le train part à sept heures et le ciel est bleu."] * 30)


def samples_for(frames: int, padded: bool) -> int:
    """Waveform length giving `frames` feature frames alone (25 ms filterbank frames every 10 ms, stacked in pairs):
    2 * frames filterbank frames, or 2 * frames - 1 when `padded` (the extractor then pads the last pair)."""
    return 400 + (2 * frames - 1 - int(padded)) * 160


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    rows = []
    for i in range(10):
        sid = f"s{i}"
        texts = {"eng": f"Sentence number {i} is here.", "deu": f"Satz Nummer {i} ist hier.",
                 "fra": LONG_TEXT if i == 3 else f"La phrase numéro {i} est ici."}
        for lang, text in texts.items():
            n = samples_for(FRAMES[lang][i], i % 2 == 1) if lang != "eng" else samples_for(20, False)
            path = folder / f"{lang}{i}.wav"
            sf.write(path, (0.3 * rng.standard_normal(n)).astype(np.float32), SR)
            rows.append({"id": f"{lang}{i}", "sentence_id": sid, "lang": lang, "text": text, "audio": path.name})
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def bundle_with_tgt_lang(bundle, folder, tgt_lang: str):
    """The tiny bundle with its tokenizer saved and reloaded with `tgt_lang` configured in tokenizer_config.json."""
    bundle.tokenizer.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tgt_lang"] = f"__{tgt_lang}__"
    cfg_path.write_text(json.dumps(cfg))
    return replace(bundle, tokenizer=SeamlessM4TTokenizer.from_pretrained(folder))


def run(tmp_path, manifest, bundle, mode: str, tasks: list[str]):
    data = {"name": mode, "model": "tiny-random", "device": "cpu", "mode": mode, "tasks": tasks, "steps": list(STEPS),
            "corpus": {"source": "manifest", "manifest": str(manifest), "languages": ["eng", "deu", "fra"]},
            "batch_size": 4, "shard_size": 8, "store": str(tmp_path / "atlas.duckdb"), "work_dir": str(tmp_path / "work"),
            "analysis": {"ks": [5]}, "evaluate": {"enabled": False}, "keep_activations": True}
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(data))
    result = run_precompute(load_run_config(path), progress=False, bundle=bundle)
    con = duckdb.connect(str(tmp_path / "atlas.duckdb"), read_only=True)
    items = con.execute("SELECT * FROM items ORDER BY task, item").df()
    dropped = con.execute("SELECT * FROM dropped").df()
    sites = con.execute("SELECT * FROM sites ORDER BY unit_offset").df()
    stats = con.execute("SELECT concept_id, unit_id FROM unit_stats").df()
    con.close()
    return result, items, dropped, sites, stats


def load_wave(path) -> np.ndarray:
    wave, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return wave


class PlainHooks:
    """Forward hooks on every named module: keep each module's last output, as numpy, per module name."""

    def __init__(self, model, names):
        self.out: dict[str, np.ndarray] = {}
        self.calls: dict[str, list[np.ndarray]] = {}
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args, output):
            arr = output.detach().float().numpy()
            self.out[name] = arr
            self.calls.setdefault(name, []).append(arr)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def greedy(model, inputs, tgt_lang):
    out = model.generate(**inputs, tgt_lang=tgt_lang, generate_speech=False, do_sample=False, num_beams=1,
                         max_new_tokens=max(STEPS) - 1, return_dict_in_generate=True)
    return out.sequences


# ------------------------------------------------------------------------------------------ faithful: the reference


def reference_inputs(row, examples, tok_dir, feature_extractor):
    """The reference's model inputs: fresh tokenizer `encode(text)` padded to 256, or processor-default features."""
    ex = examples[row["example_id"]]
    if row["modality"] == "text":
        tok = SeamlessM4TTokenizer.from_pretrained(tok_dir)
        ids = tok.encode(ex["text"])
        n = len(ids)
        ids = ids + [tok.pad_token_id] * max(256 - n, 0)
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.tensor([[1] * n + [0] * (len(ids) - n)])}
    feats = feature_extractor([load_wave(ex["audio"])], sampling_rate=SR, return_tensors="pt")
    return {"input_features": feats["input_features"], "attention_mask": feats["attention_mask"]}


def reference_record(model, names, inputs, tgt_lang):
    """One example the reference's way: generate, then per step one forward with plain hooks and `np.mean(axis=1)`
    after swapping the last two axes of speech-encoder outputs whose second axis is the longer."""
    seq = greedy(model, inputs, tgt_lang)
    per_step = {}
    for s in STEPS:
        prefix = seq[:, :s]
        hooks = PlainHooks(model, names)
        with torch.no_grad():
            model(**inputs, decoder_input_ids=prefix, decoder_attention_mask=(prefix != 0).long())
        hooks.close()
        pooled = {}
        for name, arr in hooks.out.items():
            if name.startswith("speech_encoder.") and arr.ndim == 3 and arr.shape[1] > arr.shape[2]:
                arr = np.transpose(arr, (0, 2, 1))
            pooled[name] = np.mean(arr, axis=1)[0]
        per_step[s] = pooled
    return per_step, seq[0].tolist()


def reference_reader(per_item: list[dict[str, np.ndarray]]):
    """The reference reader's filter: majority length per key, keys under 90 % dropped, examples off-majority dropped."""
    counts = {k: Counter(len(p[k]) for p in per_item) for k in per_item[0]}
    majority = {k: c.most_common(1)[0] for k, c in counts.items()}
    strong = {k for k, (length, n) in majority.items() if n / len(per_item) >= 0.90}
    kept = [i for i, p in enumerate(per_item) if all(len(p[k]) == majority[k][0] for k in strong)]
    return strong, kept, {k: majority[k][0] for k in strong}


@pytest.mark.parametrize("tgt_lang, tasks", [("deu", ["s2tt", "t2tt"]), ("fra", ["t2tt"])])
def test_faithful_run_equals_the_reference_recording(tmp_path, manifest, tiny_bundle, tiny_registry, tgt_lang, tasks):
    tok_dir = tmp_path / "tokenizer"
    bundle = bundle_with_tgt_lang(tiny_bundle, tok_dir, tgt_lang)
    result, items, dropped, sites, stats = run(tmp_path, manifest, bundle, "faithful", tasks)
    examples = {json.loads(line)["id"]: json.loads(line) for line in manifest.read_text().splitlines()}
    for ex in examples.values():
        ex["audio"] = manifest.parent / ex["audio"]
    model, fe = bundle.model, SeamlessM4TFeatureExtractor()
    names = sorted({s.module for s in tiny_registry.sites})
    # the adapter GLU runs twice per forward; the reference keeps its last call only, the first is our extra site
    glu = sites[sites["module"].str.endswith("adapter.layers.0.activation")]
    assert dict(zip(glu["call"], glu["in_reference"])) == {0: False, 1: True}
    assert sites.loc[~sites["module"].str.endswith("adapter.layers.0.activation"), "in_reference"].all()
    lang_id = bundle.tokenizer.convert_tokens_to_ids(f"__{tgt_lang}__")
    worst = 0.0
    for task in tasks:
        rows = items[items["task"] == task].sort_values("item").to_dict("records")
        records = []
        for row in rows:
            inputs = reference_inputs(row, examples, tok_dir, fe)
            per_step, seq = reference_record(model, names, inputs, "eng")
            assert list(row["output_ids"]) == seq
            if row["modality"] == "text":
                fed = list(row["input_ids"])
                assert fed == inputs["input_ids"][0].tolist()
                assert fed[:2] == [bundle.tokenizer.eos_token_id, lang_id]
                assert len(fed) == max(256, int(inputs["attention_mask"].sum()))
            records.append(per_step)
        strong, kept, lengths = reference_reader([r[STEPS[0]] for r in records])
        stored_dropped = set(dropped.loc[(dropped["task"] == task) & dropped["item"].notna(), "item"].astype(int))
        assert stored_dropped == {rows[i]["item"] for i in range(len(rows)) if i not in kept}
        dropped_sites = set(dropped.loc[(dropped["task"] == task) & dropped["site"].notna(), "site"])
        for s in STEPS:
            for stack in ("speech_encoder" if task == "s2tt" else "text_encoder", "text_decoder"):
                acts = np.asarray(load_acts(result.work_dir, task, decoder_name(s) if stack == "text_decoder" else stack))
                start = tiny_registry.stack_ranges[stack].start
                for site in tiny_registry.stack_sites(stack):
                    block = acts[site.offset - start: site.offset - start + site.width]
                    in_ref = site.call == max(x.call for x in tiny_registry.sites if x.module == site.module)
                    if not in_ref:
                        continue
                    if site.module not in strong or lengths[site.module] != site.width:
                        assert site.key in dropped_sites and not stats["unit_id"].between(
                            site.offset, site.offset + site.width - 1).any(), site.key
                        continue
                    assert site.key not in dropped_sites
                    for i in kept:
                        ref = records[i][s][site.module]
                        got = block[:, rows[i]["item"]]
                        scale = max(float(np.abs(ref).max()), 1e-6)
                        diff = float(np.abs(got - ref).max()) / scale
                        worst = max(worst, diff)
                        assert diff < 1e-5, (site.key, task, s, rows[i]["example_id"])
        if task == "s2tt":
            assert len(kept) == 19 and dropped_sites, "the corpus should exercise both reader rules"
    # statistics leave out the dropped sites' units
    assert stats.groupby("concept_id").size().min() > 0
    print(f"faithful vs reference slow path: worst relative difference {worst:.2e}")


def test_reference_text_ids_follow_the_configured_tgt_lang(tmp_path, tiny_bundle):
    from neuron_atlas.engine.record import reference_text_ids

    for lang in ("deu", "fra"):
        bundle = bundle_with_tgt_lang(tiny_bundle, tmp_path / lang, lang)
        bundle.tokenizer("Hallo", src_lang="deu")  # leaves the shared tokenizer in source mode
        fresh = SeamlessM4TTokenizer.from_pretrained(tmp_path / lang)
        for text in ("Le ciel est bleu.", LONG_TEXT):
            assert reference_text_ids(bundle.tokenizer, text) == fresh.encode(text)
        assert fresh.convert_ids_to_tokens(fresh.encode("x")[1]) == f"__{lang}__"
    assert len(fresh.encode(LONG_TEXT)) > 256


# ------------------------------------------------------------------------------- clean: the model at batch size 1


def clean_inputs(row, examples, tokenizer, feature_extractor):
    ex = examples[row["example_id"]]
    if row["modality"] == "text":
        enc = tokenizer(ex["text"], src_lang=row["src_lang"], return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    feats = feature_extractor([load_wave(ex["audio"])], sampling_rate=SR, return_tensors="pt")
    return {"input_features": feats["input_features"], "attention_mask": feats["attention_mask"]}


def clean_record(model, names, inputs, tgt_lang, channels_first):
    """One example through the unmodified model: generate, then per step one forward with plain hooks; each output
    averaged over its valid positions (speech frames by the attention mask, adapter frames by the adapter's length
    formula floor((n + 2 * (kernel // 2) - kernel) / stride) + 1; text and decoder have no padding at batch 1)."""
    seq = greedy(model, inputs, tgt_lang)
    cfg = model.config
    frames = int(inputs["attention_mask"].sum())
    n_adapter = int(np.floor((frames + 2 * (cfg.adaptor_kernel_size // 2) - cfg.adaptor_kernel_size) / cfg.adaptor_stride) + 1)
    per_step = {}
    for s in STEPS:
        prefix = seq[:, :s]
        hooks = PlainHooks(model, names)
        with torch.no_grad():
            model(**inputs, decoder_input_ids=prefix)
        hooks.close()
        pooled = {}
        for name, outs in hooks.calls.items():
            for call, arr in enumerate(outs):
                x = np.transpose(arr, (0, 2, 1)) if channels_first[name] else arr
                n = x.shape[1]
                if name.startswith("speech_encoder.") or ("cross_attention" in name and name.endswith(("k_proj", "v_proj"))
                                                          and "input_features" in inputs):
                    n = frames if x.shape[1] == inputs["attention_mask"].shape[1] else n_adapter
                pooled[(name, call)] = x[0, :n].mean(axis=0)
        per_step[s] = pooled
    return per_step, seq[0].tolist()


def test_clean_run_equals_the_unmodified_model_at_batch_one(tmp_path, manifest, tiny_bundle, tiny_registry):
    result, items, dropped, sites, stats = run(tmp_path, manifest, tiny_bundle, "clean", ["s2tt", "t2tt"])
    assert dropped.empty
    examples = {json.loads(line)["id"]: json.loads(line) for line in manifest.read_text().splitlines()}
    for ex in examples.values():
        ex["audio"] = manifest.parent / ex["audio"]
    model, fe = tiny_bundle.model, SeamlessM4TFeatureExtractor()
    modules = dict(model.named_modules())
    names = sorted({s.module for s in tiny_registry.sites})
    channels_first = {n: isinstance(modules[n], (torch.nn.Conv1d, torch.nn.GLU)) for n in names}
    worst = 0.0
    odd = set()
    for task in ("s2tt", "t2tt"):
        for row in items[items["task"] == task].to_dict("records"):
            inputs = clean_inputs(row, examples, tiny_bundle.tokenizer, fe)
            if "input_features" in inputs:
                odd.add(inputs["input_features"].shape[1] - int(inputs["attention_mask"].sum()))
            else:
                assert list(row["input_ids"]) == inputs["input_ids"][0].tolist()
            per_step, seq = clean_record(model, names, inputs, "eng", channels_first)
            assert list(row["output_ids"]) == seq, row["example_id"]
            for s in STEPS:
                for stack in ("speech_encoder" if task == "s2tt" else "text_encoder", "text_decoder"):
                    acts = load_acts(result.work_dir, task, decoder_name(s) if stack == "text_decoder" else stack)
                    start = tiny_registry.stack_ranges[stack].start
                    for site in tiny_registry.stack_sites(stack):
                        ref = per_step[s][(site.module, site.call)]
                        got = np.asarray(acts[site.offset - start: site.offset - start + site.width, row["item"]])
                        diff = float(np.abs(got - ref).max()) / max(float(np.abs(ref).max()), 1e-6)
                        worst = max(worst, diff)
                        assert diff < 1e-5, (site.key, task, s, row["example_id"], diff)
    assert odd == {0, 1}
    print(f"clean vs unmodified model at batch 1: worst relative difference {worst:.2e}")


def test_adapter_guard_leaves_a_single_utterance_untouched(tiny_bundle):
    """At batch size 1 the guarded model is the unmodified model, the extractor's padding frame included."""
    fe = SeamlessM4TFeatureExtractor()
    for frames, padded in ((31, True), (32, False), (41, True)):
        wave = np.random.default_rng(frames).standard_normal(samples_for(frames, padded)).astype(np.float32)
        feats = fe([wave], sampling_rate=SR, return_tensors="pt")
        assert feats["input_features"].shape[1] == frames and int(feats["attention_mask"].sum()) == frames - padded
        dec = torch.tensor([[tiny_bundle.tokenizer.eos_token_id, 5, 6]])
        with torch.no_grad():
            plain = tiny_bundle.model(**feats, decoder_input_ids=dec).logits
            with AdapterPaddingGuard(tiny_bundle.model):
                guarded = tiny_bundle.model(**feats, decoder_input_ids=dec).logits
        assert torch.equal(plain, guarded), frames
