"""Held-out evaluation of the demo model: every task and language, on sentences and a voice never trained on.

ASR is scored by character (and word) error rate, translations by chrF++ and BLEU against the reference, and every
output by whether the language identifier picks the requested target language. Scores are given for all held-out
sentences and separately for the held-out built-in sentences and the held-out grammar sentences.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from neuron_atlas.engine.model.loading import ModelBundle, configure_cpu_threads, load_model
from neuron_atlas.engine.sentences import Sentence
from neuron_atlas.demo_trainer.data import HELDOUT_PITCH, HELDOUT_RATE, HELDOUT_VARIANT, DemoData
from neuron_atlas.engine.metrics import LangIdIdentifier, asr_scores, corpus_scores

#: The quality bar of the demo model on held-out voice and sentences.
BARS = {"asr_cer_max": 0.15, "x2en_chrfpp_min": 60.0, "target_language_min": 0.95}
TASK_NAMES = ("asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt")


def _generate(bundle: ModelBundle, inputs: dict, tgt_lang: str, max_new_tokens: int) -> list[str]:
    out = bundle.model.generate(**inputs, tgt_lang=tgt_lang, generate_speech=False, do_sample=False, num_beams=1,
                                max_new_tokens=max_new_tokens)
    return bundle.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)


def translate_speech(bundle: ModelBundle, features: Sequence[np.ndarray], tgt_lang: str, batch_size: int = 32,
                     max_new_tokens: int = 48) -> list[str]:
    """Greedy decode of speech features [frames, 160] towards `tgt_lang`, batched by length (padding masked)."""
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    out: list[str] = [""] * len(features)
    with torch.inference_mode(), AdapterPaddingGuard(bundle.model):
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            width = max(features[i].shape[0] for i in idx)
            x = torch.zeros((len(idx), width, features[idx[0]].shape[1]), dtype=bundle.dtype)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                x[row, : features[i].shape[0]] = torch.from_numpy(features[i])
                mask[row, : features[i].shape[0]] = 1
            texts = _generate(bundle, {"input_features": x.to(bundle.device), "attention_mask": mask.to(bundle.device)},
                              tgt_lang, max_new_tokens)
            for i, text in zip(idx, texts):
                out[i] = text
    return out


def translate_text(bundle: ModelBundle, texts: Sequence[str], src_lang: str, tgt_lang: str, batch_size: int = 64,
                   max_new_tokens: int = 48) -> list[str]:
    """Greedy decode of texts in `src_lang` towards `tgt_lang`."""
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = bundle.tokenizer(list(texts[start: start + batch_size]), src_lang=src_lang, padding=True,
                                   return_tensors="pt")
            out += _generate(bundle, {k: v.to(bundle.device) for k, v in enc.items()}, tgt_lang, max_new_tokens)
    return out


def _scores(task: str, lang: str, tgt: str, hyps: list[str], refs: list[str], identifier: LangIdIdentifier) -> dict:
    probs = identifier.probabilities(hyps)
    ok = [bool(p) and max(p, key=p.get) == tgt and p[tgt] > 0 for p in probs]
    result = {"n": len(hyps), "target_language": float(np.mean(ok))}
    if task == "asr":
        result.update(asr_scores(hyps, refs, lang))
    else:
        result.update(corpus_scores(hyps, refs, lang=tgt))
    return result


def evaluate_bundle(bundle: ModelBundle, data: DemoData, sentences: Sequence[Sentence] | None = None,
                    limit: int | None = None, progress: bool = True, n_samples: int = 3) -> dict:
    """Scores of every task and language on `sentences` (default: the held-out ones) spoken by the held-out voice."""
    sentences = list(data.heldout if sentences is None else sentences)[:limit]
    languages = tuple(data.config.languages)
    others = [lang for lang in languages if lang != "eng"]
    identifier = LangIdIdentifier(languages, scope="candidates")
    clip_of = {(c.sentence_id, c.lang): i for i, c in enumerate(data.clips) if c.split == "heldout"}
    missing = [(s.id, lang) for s in sentences for lang in languages if (s.id, lang) not in clip_of]
    if missing:
        raise ValueError(f"no held-out clip for {missing[:3]} (evaluation needs held-out sentences)")
    feats = {key: data.clip_features(i) for key, i in clip_of.items()}
    jobs = [("asr", lang, lang) for lang in languages] + [("s2tt", lang, "eng") for lang in others] + \
           [("t2tt", lang, "eng") for lang in others] + [("en2x_s2tt", "eng", lang) for lang in others] + \
           [("en2x_t2tt", "eng", lang) for lang in others]
    groups = {"all": lambda s: True, "builtin": lambda s: not s.id.startswith("g"),
              "grammar": lambda s: s.id.startswith("g")}
    tasks: dict = {t: {} for t in TASK_NAMES}
    samples: dict = {t: {} for t in TASK_NAMES}
    for task, src, tgt in tqdm(jobs, desc="evaluating held-out", unit="job", disable=not progress):
        if task in ("asr", "s2tt", "en2x_s2tt"):
            hyps = translate_speech(bundle, [feats[(s.id, src)] for s in sentences], tgt)
        else:
            hyps = translate_text(bundle, [s.text(src) for s in sentences], src, tgt)
        refs = [s.text(tgt) for s in sentences]
        label = tgt if task.startswith("en2x") else src
        tasks[task][label] = {}
        for name, keep in groups.items():
            idx = [i for i, s in enumerate(sentences) if keep(s)]
            if idx:
                tasks[task][label][name] = _scores(task, src, tgt, [hyps[i] for i in idx], [refs[i] for i in idx],
                                                   identifier)
        samples[task][label] = [{"id": s.id, "source": s.text(src), "output": h, "reference": r}
                                for s, h, r in list(zip(sentences, hyps, refs))[:n_samples]]
    reference_id = {}
    for lang in languages:
        probs = identifier.probabilities([s.text(lang) for s in sentences])
        reference_id[lang] = float(np.mean([bool(p) and max(p, key=p.get) == lang for p in probs]))
    return {
        "heldout_voice": {"variant": HELDOUT_VARIANT, "rate": HELDOUT_RATE, "pitch": HELDOUT_PITCH},
        "n_sentences": {name: sum(1 for s in sentences if keep(s)) for name, keep in groups.items()},
        "tasks": tasks,
        "summary": summarize(tasks),
        "reference_target_language": reference_id,
        "samples": samples,
    }


def summarize(tasks: dict, group: str = "all") -> dict:
    """The quality-bar numbers (worst language per bar) and whether each bar is met."""
    asr_cer = {lang: m[group]["cer"] for lang, m in tasks["asr"].items()}
    x2en = {f"{t}:{lang}": m[group]["chrfpp"] for t in ("s2tt", "t2tt") for lang, m in tasks[t].items()}
    target = {f"{t}:{lang}": m[group]["target_language"] for t in TASK_NAMES for lang, m in tasks[t].items()}
    worst_cer, worst_chrf, worst_target = max(asr_cer.values()), min(x2en.values()), min(target.values())
    return {
        "asr_cer_max": worst_cer,
        "x2en_chrfpp_min": worst_chrf,
        "target_language_min": worst_target,
        "bars": dict(BARS),
        "passed": {
            "asr_cer": worst_cer <= BARS["asr_cer_max"],
            "x2en_chrfpp": worst_chrf >= BARS["x2en_chrfpp_min"],
            "target_language": worst_target >= BARS["target_language_min"],
        },
    }


def evaluate_saved(folder: Path, data: DemoData, limit: int | None = None, progress: bool = True) -> dict:
    """Load a saved demo model the way users do (`load_model`, float32 on CPU) and evaluate it on held-out data."""
    bundle = load_model(str(folder), device="cpu")
    configure_cpu_threads(bundle)
    return evaluate_bundle(bundle, data, limit=limit, progress=progress)
