"""The lab's token attribution panel: pick an output token of the baseline or intervened run, rank the units by their
estimated effect on it, see the top ones verified by forcing, and send the verified units to the basket.

URL state keys (in the lab's page spec): at_tok (token index; set = the panel runs on open), at_side (baseline |
intervened), at_ref (the reference forcing writes: on_p50, on_p90, off_mean, off_p50, zero), at_vs (1 = log-odds
against the other output's token at that index), at_n (units verified). A finding of the lab saves the attribution
call with the intervention's, so it re-verifies and copies as Python like any lab finding.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui, views
from app.client import BackendError
from app.components import attribution as at
from app.components.common import control, error_text, loading
from app.components.audio import audio_id_for
from app.lab_logic import PAGE, LabInputError, build_request, build_spec, concept_of, unit_refs, with_basket

REFERENCES = {"on_p50": "on_p50 (the concept's median when on)", "on_p90": "on_p90", "off_mean": "off_mean",
              "off_p50": "off_p50", "zero": "zero"}


def panel(s: Mapping[str, Any]) -> html.Div:
    """The attribution card under the lab's result (its controls hold the at_* state keys)."""
    return html.Div([
        html.H2("Token attribution"),
        html.P("Which units move one output token? Each unit's estimated change of the token's log-probability if it "
               "were forced to the reference (gradient × (reference − activation), one forward and backward pass); the "
               "top units are then forced one at a time, and all together, to measure the real change.", className="hint"),
        html.Div([
            control("Output", ui.radio("lab-at-side", ui.options(list(at.SIDES)), s["at_side"])),
            control("Token index", dcc.Input(id="lab-at-tok", type="number", min=0, max=1024, step=1, value=s["at_tok"],
                                             placeholder="0 = first token", debounce=True), class_name="w-narrow"),
            control("Reference (forced value)", ui.dropdown("lab-at-ref", ui.options(list(REFERENCES), REFERENCES), s["at_ref"])),
            control("Units to verify", dcc.Input(id="lab-at-n", type="number", min=0, max=100, step=1, value=s["at_n"],
                                                 debounce=True), class_name="w-narrow"),
            control("Objective", dcc.Checklist(id="lab-at-vs", options=[{"label": "log-odds against the other output's "
                                                                         "token at this index", "value": 1}],
                                               value=[1] if s["at_vs"] else [], className="radio")),
        ], className="controls"),
        html.Div([html.Button("Attribute", id="lab-at-run", className="button primary"),
                  html.Button("Add the verified units to the basket", id="lab-at-basket", className="button"),
                  html.Span(id="lab-at-basket-status", className="muted", role="status")], className="actions"),
        error_text("lab-attribution-error"),
        loading(html.Div(id="lab-at-out")),
        dcc.Store(id="lab-at-verified", data=None),
    ], className="card", id="lab-attribution")


def _token_button(i: int, text: str, cls: str) -> html.Button:
    return html.Button(text, id={"type": "lab-at-token", "index": i}, className=f"{cls} button small", title=f"token {i}")


def run_attribution(s: Mapping[str, Any], audio_id: str | None = None) -> dict[str, Any]:
    """The lab state's attribution answer (the same call a finding of this view stores; an uploaded or recorded input,
    which findings do not keep, by its backend `audio_id`)."""
    client = context.client()
    if audio_id is None:
        calls = views.view_calls(client, PAGE, s)
        call = next(c for c in calls if c["path"] == at.PATH)
        return client.attribute(call["body"])
    concept = concept_of(client, s)
    refs = unit_refs(list(s.get("units") or ()), client.sites(s["run"])) if s["us"] == "basket" else None
    spec = build_spec(s, concept, refs)
    call = at.attribution_call(client, s, spec, concept, build_request(s, spec, audio_id), audio_id)
    return client.attribute(call["body"])


def register_callbacks(app: Dash) -> None:
    @app.callback(Output("lab-state", "data", allow_duplicate=True), Output(f"{PAGE}-url", "data", allow_duplicate=True),
                  Input("lab-at-side", "value"), Input("lab-at-tok", "value"), Input("lab-at-ref", "value"),
                  Input("lab-at-vs", "value"), Input("lab-at-n", "value"), State("lab-state", "data"),
                  prevent_initial_call=True)
    def update(side, tok, ref, vs, n, s):
        new = {**s, "at_side": side, "at_tok": None if tok in (None, "") else int(tok), "at_ref": ref,
               "at_vs": 1 if vs else 0, "at_n": at.DEFAULT_VERIFY if n in (None, "") else int(n)}
        if new == s:
            return no_update, no_update
        return new, st.href(PAGE, new)

    @app.callback(Output("lab-at-tok", "value"), Input({"type": "lab-at-token", "index": ALL}, "n_clicks"),
                  prevent_initial_call=True)
    def pick_token(clicks):
        if not ctx.triggered_id or not any(clicks):
            return no_update
        return int(ctx.triggered_id["index"])

    @app.callback(Output("lab-at-out", "children"), Output("lab-at-verified", "data"), Output("lab-attribution-error", "children"),
                  Input("lab-at-run", "n_clicks"), State("lab-state", "data"), State("basket", "data"),
                  State("lab-upload-data", "data"), State("lab-mic", "data"), State("lab-audio", "data"))
    def attribute(n, s, basket, upload, mic, sent):
        if not n and (s.get("at_tok") is None or s["in"] in ("upload", "mic")):
            return no_update, no_update, ""
        s = with_basket(s, basket)
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            result = run_attribution(s, audio_id_for(context.client(), s["in"], sent, upload, mic))
        except LabInputError as exc:
            return no_update, None, exc.message
        except BackendError as exc:
            return no_update, None, exc.message
        view = at.attribution_view(result, prov, _token_button)
        return view, at.verified_units(result), ""

    @app.callback(Output("basket", "data", allow_duplicate=True), Output("lab-at-basket-status", "children"),
                  Input("lab-at-basket", "n_clicks"), State("lab-at-verified", "data"), State("basket", "data"),
                  prevent_initial_call=True)
    def to_basket(n, verified, basket):
        if not n:
            return no_update, no_update
        if not verified:
            return no_update, "no verified units yet: press Attribute first"
        new = at.add_to_basket(basket, verified)
        return new, f"{len(verified)} verified units sent · the basket holds {len(new)} units"
