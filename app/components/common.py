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


def loading(children: Any, id_: str | None = None) -> dcc.Loading:
    """Loading indicator for anything that may take more than 200 ms (shown after a short delay)."""
    kwargs = {"id": id_} if id_ else {}
    return dcc.Loading(children, type="dot", delay_show=200, **kwargs)


def control(label: str, component: Any, error_id: str | dict | None = None, help_text: str | None = None,
            class_name: str = "") -> html.Div:
    """A labelled control with its own error slot underneath."""
    parts: list[Any] = [html.Label(label, className="control-label"), component]
    if help_text:
        parts.append(html.Div(help_text, className="control-help"))
    if error_id is not None:
        parts.append(error_text(error_id))
    return html.Div(parts, className=f"control {class_name}".strip())
