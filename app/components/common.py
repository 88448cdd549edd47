"""Small shared pieces: where a figure's data comes from (provenance), labels, error and notice boxes."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dash import dcc, html

LANGUAGE_NAMES = {"eng": "English", "deu": "German", "spa": "Spanish", "fra": "French", "jpn": "Japanese",
                  "cmn": "Chinese"}
TASK_NAMES = {"asr": "ASR (speech → same language)", "s2tt": "S2TT (speech X → eng)", "t2tt": "T2TT (text X → eng)",
              "en2x_s2tt": "en→X S2TT (English speech → X)", "en2x_t2tt": "en→X T2TT (English text → X)",
              "s2tt+t2tt": "S2TT + T2TT (speech and text X → eng)",
              "en2x_s2tt+en2x_t2tt": "en→X S2TT + T2TT (English speech and text → X)"}
STACK_NAMES = {"speech_encoder": "speech encoder", "text_encoder": "text encoder", "text_decoder": "text decoder"}
#: Okabe–Ito palette (distinguishable under the common colour-vision deficiencies).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MODALITY_COLOURS = {"speech": "#0072B2", "text": "#E69F00", None: "#009E73"}


@dataclass(frozen=True)
class Provenance:
    """Which run, model, mode and corpus a figure shows; every figure prints `line()` under its title."""

    run_id: str
    model_spec: str = "?"
    model_checksum: str = "?"
    mode: str = "?"
    corpus_source: str = "?"
    n_examples: int | None = None

    @classmethod
    def from_run(cls, run: Mapping[str, Any]) -> Provenance:
        return cls(run_id=str(run.get("run_id", "?")), model_spec=str(run.get("model_spec") or "?"),
                   model_checksum=str(run.get("model_checksum") or "?"), mode=str(run.get("mode") or "?"),
                   corpus_source=str(run.get("corpus_source") or "?"), n_examples=run.get("n_examples"))

    def line(self, wrap: bool = False) -> str:
        """`run … · model … (checksum) · … mode · … corpus`; `wrap` breaks it in two lines for narrow figures."""
        corpus = f"{self.corpus_source} corpus" + (f", {self.n_examples} examples" if self.n_examples is not None else "")
        head = f"run {self.run_id} · model {self.model_spec} ({self.model_checksum[:12]})"
        return f"{head}{'<br>' if wrap else ' · '}{self.mode} mode · {corpus}"

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "model_spec": self.model_spec, "model_checksum": self.model_checksum,
                "mode": self.mode, "corpus_source": self.corpus_source, "n_examples": self.n_examples}


def lang_label(code: str | None) -> str:
    if code is None:
        return "all languages"
    name = LANGUAGE_NAMES.get(code)
    return f"{code} ({name})" if name else code


def concept_label(c: Mapping[str, Any], short: bool = False) -> str:
    """A concept in words: `deu · s2tt · step 2`, or just the language when `short`."""
    kind = c.get("kind")
    lang = c.get("language")
    head = f"speech vs text · {lang or 'all'}" if kind == "modality" else (lang or "?")
    return head if short else f"{head} · {c.get('task')} · step {c.get('step')}"


def step_label(step: int | None) -> str:
    """Decoder prefix length in words (2 = before content token 1)."""
    if step is None:
        return "encoder (step-independent)"
    return f"step {step} (before content token {max(int(step) - 1, 0)})"


def error_text(id_: str | dict, message: str | None = None) -> html.Div:
    """A plain-words error line placed next to a control (empty until a callback fills it)."""
    return html.Div(message or "", id=id_, className="field-error", role="alert")


def notice(children: Any, kind: str = "info") -> html.Div:
    return html.Div(children, className=f"notice notice-{kind}")


#: Where the dashboard serves the demo model's card (app.main).
DEMO_CARD_PATH = "/demo-model-card"


def demo_model_line(model_spec: str | None) -> html.Div | None:
    """One line wherever results of the shipped demo model are read, so that no screenshot passes for a finding about
    SeamlessM4T v2; None for any other model."""
    if model_spec != "demo":
        return None
    return html.Div([
        html.Strong("Demo model, not SeamlessM4T v2: "),
        "its language-selective units and its steerability were trained in by auxiliary objectives, so what you see "
        "here illustrates the method, not a property of the real model (",
        html.A("model card", href=DEMO_CARD_PATH, target="_blank", rel="noopener"), ").",
    ], className="notice notice-info demo-model-line", role="note")


def loading(children: Any, id_: str | None = None) -> dcc.Loading:
    """Loading indicator for anything that may take more than 200 ms (shown after a short delay)."""
    kwargs = {"id": id_} if id_ else {}
    return dcc.Loading(children, type="dot", delay_show=200, **kwargs)


def control(label: str, component: Any, error_id: str | dict | None = None, help_text: str | None = None,
            class_name: str = "", id_: str | None = None) -> html.Div:
    """A labelled control with its own error slot underneath (`id_` names the box, e.g. to hide it where it does
    not act)."""
    parts: list[Any] = [html.Label(label, className="control-label"), component]
    if help_text:
        parts.append(html.Div(help_text, className="control-help"))
    if error_id is not None:
        parts.append(error_text(error_id))
    return html.Div(parts, className=f"control {class_name}".strip(), **({"id": id_} if id_ else {}))


MODE_DESCRIPTIONS = {
    "clean": "clean mode: what the unmodified model computes on each input run alone with the processor's defaults "
             "(batched without changing a value), each unit averaged over the input's valid positions; text "
             "tokenised with its source language.",
    "faithful": "faithful mode: the reference code's recording, one example at a time: text tokenised by a fresh "
                "tokenizer's encode() (</s> __tgt_lang__ … </s> with the tokenizer's configured tgt_lang), padded "
                "to 256; every unit averaged over every position its module outputs (pads included); examples and "
                "sites the reference's reader drops are left out of the statistics.",
}


def run_description(run: Mapping[str, Any], max_rows: int = 200) -> html.Details:
    """A collapsible description of a run: its recording mode, the text token ids fed, what a faithful run dropped."""
    inputs = run.get("text_inputs") or []
    dropped = run.get("dropped") or []
    parts: list[Any] = [html.P(MODE_DESCRIPTIONS.get(str(run.get("mode")), f"mode {run.get('mode')}"))]
    if inputs:
        rows = [html.Tr([html.Td(r["example_id"]), html.Td(", ".join(r.get("tasks") or [])),
                         html.Td(" ".join(str(i) for i in r["input_ids"])
                                 + (f"  + {r['fed_length'] - len(r['input_ids'])} × pad" if r["fed_length"] > len(r["input_ids"]) else ""))])
                for r in inputs[:max_rows]]
        parts += [html.H4(f"Text token ids fed to the model ({len(inputs)} text examples)"),
                  html.Table([html.Thead(html.Tr([html.Th("example"), html.Th("tasks"), html.Th("input ids")])),
                              html.Tbody(rows)], className="table token-ids")]
        if len(inputs) > max_rows:
            parts.append(html.P(f"first {max_rows} shown; GET /runs/{{run_id}} lists all", className="hint"))
    elif run.get("mode"):
        parts.append(html.P("This store does not keep the text token ids (written before store schema 1.2).", className="hint"))
    if dropped:
        parts += [html.H4(f"Left out as the reference's reader does ({len(dropped)})"),
                  html.Ul([html.Li(f"{d['task']} · {d.get('example_id') or d.get('site')}: {d['reason']}") for d in dropped[:max_rows]])]
    return html.Details([html.Summary("About this run (recording mode, text token ids)"), *parts], id="run-description")
