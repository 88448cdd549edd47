"""The demo model's card (`README.md` beside the weights): what it is, what it was trained on, how well it does,
and what it is not. Written from the training report, so the numbers on the card are the measured ones."""
from __future__ import annotations

from pathlib import Path

from neuron_atlas.demo_trainer.evaluate import TASK_NAMES

_TASK_TITLES = {
    "asr": "ASR (speech X → text X)",
    "s2tt": "S2TT X→en (speech X → English text)",
    "t2tt": "T2TT X→en (text X → English text)",
    "en2x_s2tt": "S2TT en→X (English speech → text X)",
    "en2x_t2tt": "T2TT en→X (English text → text X)",
}


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "README.md") / 1e6


def _fmt(value: float, kind: str) -> str:
    if kind in ("cer", "wer", "target_language"):
        return f"{100 * value:.1f} %"
    return f"{value:.1f}"


def metrics_table(tasks: dict, group: str) -> list[str]:
    """Markdown rows: one per task and language, with its error rate or chrF++/BLEU and target-language rate."""
    lines = ["| task | language | n | CER | WER | chrF++ | BLEU | in target language |",
             "|---|---|---|---|---|---|---|---|"]
    for task in TASK_NAMES:
        for lang, groups in tasks[task].items():
            m = groups.get(group)
            if m is None:
                continue
            cells = [
                _fmt(m["cer"], "cer") if "cer" in m else "",
                _fmt(m["wer"], "wer") if "wer" in m else "",
                _fmt(m["chrfpp"], "chrfpp") if "chrfpp" in m else "",
                _fmt(m["bleu"], "bleu") if "bleu" in m else "",
                _fmt(m["target_language"], "target_language"),
            ]
            lines.append(f"| {task} | {lang} | {m['n']} | " + " | ".join(cells) + " |")
    return lines


def _objectives(cfg: dict) -> str:
    """", steerability objective weight 1, ..." for the auxiliary objectives a run trained with."""
    names = {"steer_weight": "steerability", "evidence_weight": "language-evidence"}
    return "".join(f", {label} objective weight {cfg[key]:g}" for key, label in names.items() if cfg.get(key))


def continuation_lines(report: dict) -> list[str]:
    """Bullets for a model trained in more than one run (`train-demo --init-from`): what each earlier run did."""
    earlier = report.get("earlier_runs") or []
    if not earlier:
        return []
    total = sum(r["train"]["seconds"] for r in earlier) + report["train"]["seconds"]
    lines = [f"- Trained in {len(earlier) + 1} runs, {total / 60:.1f} min of training in all; the settings and steps "
             "above are those of the last run, which continued from the previous one's weights and tokenizer "
             "(`train-demo --init-from`):"]
    for i, run in enumerate(earlier, start=1):
        cfg = run["train_config"]
        labels = "the input's language" if cfg.get("source_language_labels", False) else "the target language"
        start = "from scratch" if i == 1 else f"from run {i - 1}"
        lines.append(f"  - run {i}: {start}, {run['train']['steps']} steps in {run['train']['seconds'] / 60:.1f} "
                     f"min, peak lr {cfg['lr']}" + (f", text-only first {100 * cfg['text_phase']:.0f} %"
                                                    if cfg.get("text_phase") else "")
                     + f", first decoder position labelled with {labels}{_objectives(cfg)}.")
    lines.append(f"  - run {len(earlier) + 1}: from run {len(earlier)}, {report['train']['steps']} steps in "
                 f"{report['train']['seconds'] / 60:.1f} min, peak lr {report['train_config']['lr']}"
                 f"{_objectives(report['train_config'])}.")
    if report["train_config"].get("source_language_labels"):
        lines.append("- The first decoder position (input `</s>`) is labelled with the input's language. Generation "
                     "forces the target-language token there, so that prediction never shows in outputs; it makes the "
                     "decoder identify the language it reads, as large multilingual decoders do.")
    return lines


def steering_lines(report: dict) -> list[str]:
    """What the steerability objective is, for a model trained with it: the card must say the effect is trained in."""
    weight = report["train_config"].get("steer_weight") or 0.0
    if not weight:
        return []
    return [
        f"- **Steerability is trained in** (objective weight {weight:g}, `neuron_atlas/demo_trainer/steering.py`). "
        "Translation alone gave a decoder that reads the target language through many redundant paths, so the "
        "paper's median-replacement steering barely moved it (+0.05 probability over random units). Each training "
        "step therefore repeats that experiment on six English sentences: it measures every decoder unit over the "
        "prefix `</s> __tgt__`, takes the k most and least selective units for one language M (k drawn from 100, "
        "250, 500; re-measured every step, not fixed channels), forces them to M's medians at every position while "
        "translating towards the other languages, and trains on M's translation; the same number of random units "
        "forced the same way is trained to leave the output alone. So steering results on this model show how the "
        "method reads a model in which that mechanism exists; they are not evidence that it arises by itself.",
    ]


def evidence_lines(report: dict) -> list[str]:
    """What the language-evidence objective is, for a model any of whose runs trained with it."""
    runs = [*(report.get("earlier_runs") or []), report]
    weights = [r["train_config"].get("evidence_weight") or 0.0 for r in runs]
    if not any(weights):
        return []
    return [
        f"- **Every source language is signalled by units that fire** (language-evidence objective, weight "
        f"{max(weights):g}, `neuron_atlas/demo_trainer/language_evidence.py`). The decoder names the language it reads "
        "at its first position; a softmax can do that with five detectors and one default language that is the "
        "silence of the others, and an earlier model did so for German speech (its best unit fired *low* for "
        "German: AP 0.97 with the sign flipped, 0.86 as the paper measures it, counting units that fire high). A "
        "training-only head therefore also names the source language from the decoder's feed-forward activations "
        "(after the ReLU) at the two prefix positions, through non-negative, bias-free weights, so a language no "
        "unit fires for cannot win. Which units carry each language is left to training; the head is not saved.",
    ]


def reproduce_line(report: dict) -> str:
    """How to train this model again: one command, or one per run for a continued model."""
    runs = [*(report.get("earlier_runs") or []), {"train": report["train"], "train_config": report["train_config"]}]
    commands = []
    for i, run in enumerate(runs):
        out = "assets/demo-model" if i == len(runs) - 1 else f"run{i + 1}"
        cmd = f"neuron-atlas train-demo --out {out} --minutes {run['train_config']['minutes']:g}"
        if not run["train_config"].get("source_language_labels", False):
            cmd += " --first-label target"
        for key, flag in (("steer_weight", "--steer-weight"), ("evidence_weight", "--evidence-weight")):
            if run["train_config"].get(key):
                cmd += f" {flag} {run['train_config'][key]:g}"
        if i > 0:
            cmd += f" --init-from run{i}"
        commands.append(f"`{cmd}`")
    return ("Reproduce (same seed and data): " + ", then ".join(commands) + ". Runs stop at their time budget, so a "
            "faster machine trains more steps (add `--steps N` with the step counts above to repeat them). "
            "`neuron-atlas train-demo --quick` runs the whole pipeline on a tiny model in a minute or two.")


def render_card(folder: Path, report: dict) -> str:
    """The card's markdown."""
    train, data, dcfg, tcfg = report["train"], report["data"], report["data_config"], report["train_config"]
    metrics = report["metrics"]
    summary = metrics["summary"]
    dims = tcfg["dims"]
    voice = metrics["heldout_voice"]
    passed = summary["passed"]
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    threads = ", ".join(f"{t}: {n}" for t, n in sorted(train.get("thread_steps", {}).items(), key=lambda kv: int(kv[0])))
    lines = [
        "# Neuron Atlas demo model",
        "",
        "A small **teaching model with the exact `SeamlessM4Tv2Model` architecture** (transformers), trained by this "
        "project from scratch on synthetic speech and template text in six languages (eng, deu, spa, fra, jpn in kana, "
        "cmn). It exists so that the atlas, the heatmaps and the intervention lab show real language and modality "
        "structure offline, on a laptop, in minutes. Load it with `load_model(\"demo\")`.",
        "",
        "## What it is not",
        "",
        "- **Not SeamlessM4T v2** and not derived from its weights: every weight was trained here, on a tiny "
        "synthetic corpus. Findings on it illustrate the method; they are not findings about SeamlessM4T v2.",
        "- Not a general translator: it knows the vocabulary and sentence patterns of its training corpus "
        "(everyday sentences about family, food, colours, numbers, time, weather, travel and places) and little else.",
        "- **Speech output is not trained**: the text-to-unit model and vocoder are minimal and random "
        "(`config.speech_decoder_trained = false`); the backend falls back to TTS for spoken output.",
        "- Its speech input is espeak-ng synthetic speech; real recorded speech is far outside its training data.",
        "",
        "## Architecture",
        "",
        f"`SeamlessM4Tv2Model`, hidden size {dims['hidden_size']}: speech encoder with {dims['speech_encoder_layers']} "
        f"Conformer layers (FFN {dims['speech_encoder_intermediate_size']}, depthwise conv kernel "
        f"{dims['conv_depthwise_kernel_size']}, relative positions) and the stride-8 length adapter; text encoder "
        f"{dims['encoder_layers']} layers (FFN {dims['encoder_ffn_dim']}); shared text decoder {dims['decoder_layers']} "
        f"layers (FFN {dims['decoder_ffn_dim']}, cross-attention); {dims['encoder_attention_heads']} attention heads. "
        f"Own BPE tokenizer ({tcfg['vocab_size']} merges target, language tokens `__eng__` … `__cmn__`); the same "
        "`SeamlessM4TFeatureExtractor` (80 mel bins, stride 2) as the large model. Decoding starts with `</s>` "
        "then the target-language token, as in SeamlessM4T v2.",
        "",
        f"- Parameters: {train['n_parameters']:,} (weights stored in float16; loaded as float32 on CPU)",
        f"- Size on disk: {_folder_mb(folder):.1f} MB",
        "",
        "## Training",
        "",
        f"Trained jointly for ASR, X→en speech and text translation and en→X speech and text translation, one "
        f"speech batch ({tcfg['speech_batch']} clips, each decoded towards its transcript and a translation) and one "
        f"text batch ({tcfg['text_batch']} sentences) per step"
        + (f", after a text-only first {100 * tcfg['text_phase']:.0f} % of training" if tcfg["text_phase"] else "")
        + ". Two auxiliary CTC losses shape the speech encoder: one "
        f"(weight {tcfg['ctc_weight']}) on the Conformer output predicts the espeak-ng phonemes of each utterance, one "
        f"(weight {tcfg.get('ctc_token_weight', 0.0)}) on the length-adapter output (what the decoder reads) predicts "
        "the transcript's tokens, three CTC frames per adapter frame; their linear heads exist only during "
        f"training. AdamW (peak lr {tcfg['lr']}, warm-up over the first {100 * tcfg['warmup']:.0f} % of training, "
        f"then cosine), label smoothing {tcfg['label_smoothing']}, "
        f"{'dropout 0.1' if tcfg['dropout'] else 'no dropout'}, bf16 autocast, seed {tcfg['seed']}.",
        "",
        f"- Data: the {data['train_sentences'] + data['heldout_sentences']} sentences = the 130 built-in sentences "
        f"plus {dcfg['n_grammar']} sentences from the project's template grammar "
        "(`neuron_atlas/demo_trainer/grammar.py`), each in all six languages.",
        f"- Speech: {data['train_clips']:,} training clips ({data['speech_hours']} h including held-out) from espeak-ng "
        "with random voice variants, rates and pitches; the built-in sentences also with the built-in corpus's four "
        f"voices; speed perturbation on {int(100 * dcfg['speed_prob'])} % and white noise (15–35 dB SNR) on "
        f"{int(100 * dcfg['noise_prob'])} % of the clips.",
        f"- Held out: {data['heldout_sentences']} sentences (10 % of the built-in and 10 % of the grammar sentences; "
        f"built-in ids {', '.join(data['heldout_builtin_ids'])}) and one voice (espeak-ng variant "
        f"`{voice['variant']}`, rate {voice['rate']}, pitch {voice['pitch']}) that no training clip uses.",
        f"- Steps: {train['steps']} (stopped by {train['stopped_by']}); training time {train['seconds'] / 60:.1f} min "
        f"on {report.get('cpu_count', '?')} CPU cores (steps per torch thread count: {threads}), plus "
        + (f"{train['data_seconds'] / 60:.1f} min for speech synthesis, phonemes and features"
           if train["data_seconds"] >= 60 else "speech, phonemes and features read from the cache an earlier run of "
           "the same data config built")
        + f"; whole run {report['total_seconds'] / 60:.1f} min.",
        *continuation_lines(report),
        *steering_lines(report),
        *evidence_lines(report),
        "",
        reproduce_line(report),
        "",
        "## Held-out quality",
        "",
        f"Held-out sentences spoken by the held-out voice ({metrics['n_sentences']['all']} sentences: "
        f"{metrics['n_sentences']['builtin']} built-in, {metrics['n_sentences']['grammar']} grammar). Target language "
        "= share of outputs the py3langid identifier (restricted to the six languages) assigns to the requested "
        "language; on the references themselves it scores "
        + ", ".join(f"{lang} {100 * v:.0f} %" for lang, v in metrics["reference_target_language"].items()) + ".",
        "",
        f"| bar | required | reached | |",
        f"|---|---|---|---|",
        f"| ASR CER, worst language | ≤ {100 * summary['bars']['asr_cer_max']:.0f} % | "
        f"{100 * summary['asr_cer_max']:.1f} % | {verdict(passed['asr_cer'])} |",
        f"| X→en chrF++ (speech and text), worst language | ≥ {summary['bars']['x2en_chrfpp_min']:.0f} | "
        f"{summary['x2en_chrfpp_min']:.1f} | {verdict(passed['x2en_chrfpp'])} |",
        f"| output in the requested language, worst task × language | ≥ "
        f"{100 * summary['bars']['target_language_min']:.0f} % | {100 * summary['target_language_min']:.1f} % | "
        f"{verdict(passed['target_language'])} |",
        "",
        "### All held-out sentences",
        "",
        *metrics_table(metrics["tasks"], "all"),
        "",
        "### Held-out built-in sentences only",
        "",
        "These use words and constructions that the grammar does not cover, so they measure generalisation beyond "
        "the training patterns (few sentences: read as indicative).",
        "",
        *metrics_table(metrics["tasks"], "builtin"),
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path, report: dict) -> Path:
    """Write `README.md` into the model folder; returns its path."""
    path = Path(folder) / "README.md"
    path.write_text(render_card(Path(folder), report))
    return path
