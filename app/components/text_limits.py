"""What the lab says about its typed text: a character counter with the limit, the cut a too-long link makes, and a
warning when the loaded model is a built-in one and the text lies far outside what it was trained on (from the
backend's `GET /text-fit`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, State, html

from app import context, state as st
from app.client import BackendError
from app.components.common import DEMO_CARD_PATH

#: The longest text the lab keeps (its URL key's limit, equal to the backend's default `max_text_chars`).
TEXT_LIMIT = st.PAGES["lab"].key("text").max_len


def clip_link_text(query: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A lab link's query with a too-long `text` cut to the limit (rather than dropped), and the sentence saying so."""
    out = dict(query)
    raw = out.get("text")
    text = raw[-1] if isinstance(raw, (list, tuple)) and raw else raw
    if not isinstance(text, str) or len(text) <= TEXT_LIMIT:
        return out, []
    out["text"] = text[:TEXT_LIMIT]
    return out, [f"text: the link's text has {len(text):,} characters; the lab takes at most {TEXT_LIMIT:,}, so it "
                 f"was cut after character {TEXT_LIMIT:,} (“…{text[TEXT_LIMIT - 30:TEXT_LIMIT]}”)"]


def text_help(text: str | None) -> html.Div:
    """The counter and the model-fit warning, placed under the lab's text box."""
    return html.Div([
        html.Div(counter_text(len(text or "")), id="lab-text-count", className="control-help", **{"aria-live": "polite"}),
        html.Div(id="lab-text-fit"),
    ], className="lab-text-help")


def counter_text(n: int) -> str:
    """`123 / 2,000 characters`, saying at the limit that more is not taken."""
    if n >= TEXT_LIMIT:
        return f"{n:,} / {TEXT_LIMIT:,} characters: the limit; anything longer is cut here"
    return f"{n:,} / {TEXT_LIMIT:,} characters"


def fit_notice(fit: Mapping[str, Any]) -> html.Div | None:
    """A warning naming why the input is far outside the loaded model, or None when it is not."""
    if not fit.get("far_outside"):
        return None
    return html.Div([
        html.Strong(f"Far outside what the {fit.get('model')} model handles: "),
        "; ".join(fit.get("reasons") or []),
        ". Expect its output to say little about this text",
        *([" (", html.A("model card", href=DEMO_CARD_PATH, target="_blank", rel="noopener"), ")"]
          if fit.get("model") == "demo" else []),
        ".",
    ], className="notice notice-warning", role="status")


COUNTER_JS = (f"function (value) {{ var n = (value || '').length; var limit = {TEXT_LIMIT}; "
              "var fmt = function (x) { return x.toLocaleString('en-US'); }; "
              "return fmt(n) + ' / ' + fmt(limit) + ' characters' + "
              "(n >= limit ? ': the limit; anything longer is cut here' : ''); }")


def register_callbacks(app: Dash) -> None:
    app.clientside_callback(COUNTER_JS, Output("lab-text-count", "children"), Input("lab-text", "value"),
                            prevent_initial_call=True)

    @app.callback(Output("lab-text-fit", "children"), Input("lab-run", "n_clicks"), Input("lab-text", "n_blur"),
                  State("lab-text", "value"), State("lab-src", "value"), State("lab-in", "value"))
    def fit(_run, _blur, text, src, input_kind):
        if input_kind != "text" or not (text or "").strip() or not src:
            return None
        try:
            return fit_notice(context.client().text_fit(text, src))
        except BackendError as exc:
            if exc.status == 503:
                return None
            return html.Div(f"could not check the text against the model: {exc.message}", className="muted")
