"""Baseline vs intervened output with the differences highlighted, from the backend's token-level diff opcodes."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dash import html

#: SentencePiece marks a word start with U+2581; shown as a space.
WORD_START = "\u2581"


def token_text(token: str) -> str:
    """A SentencePiece token as it reads in running text."""
    return token.replace(WORD_START, " ")


def diff_segments(diff: Sequence[Mapping[str, Any]], side: str) -> list[tuple[str, str]]:
    """(text, kind) runs of one side (`baseline` or `intervened`); kind is equal, removed, added or changed."""
    if side not in ("baseline", "intervened"):
        raise ValueError(f"side: expected 'baseline' or 'intervened', got {side!r}")
    out: list[tuple[str, str]] = []
    for op in diff:
        tokens = op[f"{side}_tokens"]
        if not tokens:
            continue
        kind = op["op"]
        if kind == "equal":
            label = "equal"
        elif kind == "replace":
            label = "changed"
        elif kind == "delete":
            label = "removed" if side == "baseline" else "equal"
        else:
            label = "added" if side == "intervened" else "equal"
        out.append(("".join(token_text(t) for t in tokens), label))
    return out


def diff_view(diff: Sequence[Mapping[str, Any]], side: str, fallback_text: str = "") -> html.Div:
    """One side's text as spans; changed runs are marked (colour plus underline or strike, not colour alone)."""
    segments = diff_segments(diff, side)
    if not segments:
        return html.Div(fallback_text or "(empty output)", className="diff-text")
    children = [html.Span(text, className=f"tok tok-{kind}", title=None if kind == "equal" else kind)
                for text, kind in segments]
    return html.Div(children, className="diff-text")
