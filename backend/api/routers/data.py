"""Read-only data routes over the analysis store: everything the dashboard draws."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from backend.api.state import AtlasState
from backend.api.deps import INT_MAX, check_page_limit, get_reader, get_state, limit_query
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.api.schemas import (
    Concentration,
    Concept,
    ConceptList,
    ExamplePage,
    Heatmap,
    OverlapMatrix,
    RunList,
    SpearmanMatrices,
    UnitDetail,
    UnitPage,
)
from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS
from backend.store.reader import SORT_COLUMNS, NotFoundError, StoreReader, clean_record
from neuron_atlas.engine.versions import ENGINE_VERSION

router = APIRouter(tags=["data"], responses=errors(404, 422, 503))

Stack = Literal["speech_encoder", "text_encoder", "text_decoder"]
Component = Literal["self-attn", "cross-attn", "ffn", "conv", "norm", "adapter"]
Role = Literal["representation", "control"]
SetKind = Literal["top", "bottom", "both"]
UnitId = Path(ge=0, le=INT_MAX, description="global unit id")
SortColumn = Literal["unit_id", "ap", "on_p50", "on_p90", "off_mean", "off_p50"]
StepQ = Query(None, ge=0, le=4096, description="decoder prefix length (2 = before content token 1)")
assert set(STACKS) == set(Stack.__args__) and set(COMPONENTS) == set(Component.__args__)
assert SORT_COLUMNS == SortColumn.__args__


def run_path(run_id: str = Path(description="run id (see GET /runs), or `latest` for the newest run", max_length=200,
                                examples=["latest"]), reader: StoreReader = Depends(get_reader)) -> str:
    """The run named in the path, checked to exist (`latest` resolved to the newest run)."""
    return resolve_run_field(reader, run_id)


def resolve_run_field(reader: StoreReader, run_id: str) -> str:
    """`reader.resolve_run`, its 404 naming the field `run_id`."""
    try:
        return reader.resolve_run(run_id)
    except NotFoundError as exc:
        raise ApiProblem(404, str(exc), "run_id") from None


@router.get("/runs", response_model=RunList, summary="List runs (newest first)")
def list_runs(reader: StoreReader = Depends(get_reader)) -> dict:
    return {"engine_version": ENGINE_VERSION, "store_version": reader.version, "runs": reader.runs()}


@router.get("/runs/{run_id}", summary="One run: model, mode, corpus, config, library versions, text token ids, "
                                    "examples and sites a faithful run dropped")
def get_run(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return {"engine_version": ENGINE_VERSION, "store_version": reader.version, **reader.run(run_id),
            "text_inputs": reader.text_inputs(run_id), "dropped": reader.dropped(run_id)}


@router.get("/runs/{run_id}/tasks", summary="Recorded tasks with item counts, modality and label languages")
def get_tasks(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return {"run_id": run_id, "tasks": reader.tasks(run_id)}


@router.get("/runs/{run_id}/languages", summary="Corpus languages with example and audio counts")
def get_languages(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return {"run_id": run_id, "languages": reader.languages(run_id)}


@router.get("/runs/{run_id}/steps", summary="Recorded decoder prefix lengths")
def get_steps(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    run = reader.run(run_id)
    return {"run_id": run_id, "steps": run["steps"],
            "meaning": "decoder prefix length: 2 = </s> + target-language token, i.e. before content token 1"}


@router.get("/runs/{run_id}/concepts", response_model=ConceptList, summary="Concepts, filtered and paginated")
def list_concepts(
    run_id: str = Depends(run_path),
    kind: Literal["language", "multimodal_language", "modality"] | None = None,
    role: Role | None = None,
    task: str | None = Query(None, max_length=64),
    step: int | None = StepQ,
    language: str | None = Query(None, max_length=16),
    modality: Literal["speech", "text"] | None = None,
    limit: int = limit_query(200),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict:
    check_page_limit(state, limit)
    df = reader.concepts(run_id, kind, role, task, step, language, modality)
    page = df.iloc[offset: offset + limit]
    return {"run_id": run_id, "total": len(df), "limit": limit, "offset": offset,
            "concepts": [clean_record(r) for r in page.to_dict("records")]}


@router.get("/runs/{run_id}/concepts/{concept_id}", response_model=Concept, summary="One concept")
def get_concept(run_id: str = Depends(run_path), concept_id: int = Path(ge=0, le=INT_MAX),
                reader: StoreReader = Depends(get_reader)) -> dict:
    return reader.concept(run_id, concept_id)


@router.get("/runs/{run_id}/heatmap", response_model=Heatmap,
            summary="Units per layer x concept: AP above a threshold, or in a stored top/bottom/both set")
def heatmap(
    run_id: str = Depends(run_path),
    stack: Stack = Query(description="which stack's layers"),
    mode: Literal["ap", "top", "bottom", "both"] = Query("ap", description="count AP >= threshold, or members of stored sets of size k"),
    threshold: float = Query(0.9, ge=0.0, le=1.0, allow_inf_nan=False, description="AP threshold (mode ap)"),
    k: int | None = Query(None, ge=1, le=INT_MAX, description="set size (modes top/bottom/both; default: smallest stored)"),
    component: Component | None = Query(None, description="only units of this component"),
    group: Literal["component", "site"] = Query("component", description="`site` adds by_site: counts per site role "
                                                "(e.g. cross_attention.k_proj) to the per-component breakdown"),
    concept_ids: list[int] | None = Query(None, description="concepts (repeat the parameter); default: every concept matching the filters"),
    kind: Literal["language", "multimodal_language", "modality"] | None = None,
    role: Role | None = None,
    task: str | None = Query(None, max_length=64),
    step: int | None = StepQ,
    language: str | None = Query(None, max_length=16),
    reader: StoreReader = Depends(get_reader),
) -> dict:
    reader.check_concept_filters(run_id, task, step, language)
    if concept_ids:
        bad = [c for c in concept_ids if not 0 <= c <= INT_MAX]
        if bad:
            raise ApiProblem(422, f"query parameter concept_ids: {bad[0]} is not a concept id", "concept_ids")
        ids = concept_ids
    else:
        df = reader.concepts(run_id, kind, role, task, step, language)
        ids = [int(c) for c, stacks in zip(df["concept_id"], df["stacks"]) if stack in list(stacks)]
    return reader.heatmap(run_id, stack, ids, mode, threshold, k, component, group)


@router.get("/runs/{run_id}/concentration", response_model=Concentration,
            summary="Activation concentration (Gini, top-1 % share) per layer x language x modality")
def concentration(
    run_id: str = Depends(run_path),
    stack: Stack = Query(),
    step: int | None = StepQ,
    task: str | None = Query(None, max_length=64),
    metric: Literal["gini", "top1_share", "total"] = "gini",
    reader: StoreReader = Depends(get_reader),
) -> dict:
    return reader.concentration(run_id, stack, step, task, metric)


@router.get("/runs/{run_id}/overlap", response_model=OverlapMatrix,
            summary="Text x speech language overlap of decoder unit sets, with chance levels")
def overlap(
    run_id: str = Depends(run_path),
    role: Role = "representation",
    step: int = Query(2, ge=0, le=4096),
    set_kind: SetKind = "top",
    k: int | None = Query(None, ge=1, le=INT_MAX),
    metric: Literal["count", "c_over_k", "jaccard"] = "c_over_k",
    reader: StoreReader = Depends(get_reader),
) -> dict:
    return reader.overlap(run_id, role, step, set_kind, k, metric)


@router.get("/runs/{run_id}/overlap/units", response_model=UnitPage, summary="Units shared by one overlap cell (click-through)")
def overlap_units(
    run_id: str = Depends(run_path),
    text_lang: str = Query(max_length=16),
    speech_lang: str = Query(max_length=16),
    role: Role = "representation",
    step: int = Query(2, ge=0, le=4096),
    set_kind: SetKind = "top",
    k: int | None = Query(None, ge=1, le=INT_MAX),
    limit: int = limit_query(200),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict:
    check_page_limit(state, limit)
    return reader.overlap_units(run_id, role, step, set_kind, k, text_lang, speech_lang, limit, offset)


@router.get("/runs/{run_id}/spearman", response_model=SpearmanMatrices,
            summary="Spearman rho of decoder AP vectors (text x speech language), whole decoder, per component or per layer")
def spearman(
    run_id: str = Depends(run_path),
    role: Role = "representation",
    step: int = Query(2, ge=0, le=4096),
    scope: Literal["text_decoder", "text_decoder/self-attn", "text_decoder/cross-attn", "text_decoder/ffn",
                   "text_decoder/layer"] = "text_decoder",
    layer: int | None = Query(None, ge=0, le=4096, description="one layer of scope text_decoder/layer (default: all)"),
    reader: StoreReader = Depends(get_reader),
) -> dict:
    return reader.spearman(run_id, role, step, scope, layer)


@router.get("/runs/{run_id}/layers", summary="Every (stack, layer) with unit counts per component and its sites")
def layers(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return {"run_id": run_id, "layers": reader.layers(run_id)}


@router.get("/runs/{run_id}/sites", summary="Every unit site (hook point) with its unit-id offset")
def sites(run_id: str = Depends(run_path), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return {"run_id": run_id, "sites": reader.sites(run_id)}


@router.get("/runs/{run_id}/layers/{stack}/{layer}/units", response_model=UnitPage,
            summary="One layer's units with a concept's statistics: filter, sort, paginate")
def layer_units(
    run_id: str = Depends(run_path),
    stack: Stack = Path(),
    layer: int = Path(ge=0, le=4096),
    concept_id: int = Query(ge=0, le=INT_MAX, description="whose statistics to show"),
    sort: SortColumn = Query("ap", description="column to sort by"),
    order: Literal["asc", "desc"] = "desc",
    component: Component | None = None,
    site: str | None = Query(None, max_length=300),
    min_ap: float | None = Query(None, allow_inf_nan=False),
    max_ap: float | None = Query(None, allow_inf_nan=False),
    min_on_p50: float | None = Query(None, allow_inf_nan=False),
    max_on_p50: float | None = Query(None, allow_inf_nan=False),
    min_on_p90: float | None = Query(None, allow_inf_nan=False),
    max_on_p90: float | None = Query(None, allow_inf_nan=False),
    min_off_mean: float | None = Query(None, allow_inf_nan=False),
    max_off_mean: float | None = Query(None, allow_inf_nan=False),
    min_off_p50: float | None = Query(None, allow_inf_nan=False),
    max_off_p50: float | None = Query(None, allow_inf_nan=False),
    limit: int = limit_query(50),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict:
    check_page_limit(state, limit)
    bounds = {"ap": (min_ap, max_ap), "on_p50": (min_on_p50, max_on_p50), "on_p90": (min_on_p90, max_on_p90),
              "off_mean": (min_off_mean, max_off_mean), "off_p50": (min_off_p50, max_off_p50)}
    filters = {k: v for k, v in bounds.items() if v != (None, None)}
    return reader.layer_units(run_id, stack, layer, concept_id, sort, order == "desc", component, site, filters, limit, offset)


@router.get("/runs/{run_id}/units/{unit_id}", response_model=UnitDetail,
            summary="One unit: where it sits and its statistics for every concept")
def unit(run_id: str = Depends(run_path), unit_id: int = UnitId, reader: StoreReader = Depends(get_reader)) -> dict:
    return reader.unit(run_id, unit_id)


@router.get("/runs/{run_id}/units/{unit_id}/activations",
            summary="A unit's activation distribution per task, step, language and modality")
def unit_activations(
    run_id: str = Depends(run_path),
    unit_id: int = UnitId,
    step: int | None = Query(None, ge=0, le=4096, description="decoder units: one step (default: every step)"),
    reader: StoreReader = Depends(get_reader),
) -> dict[str, Any]:
    return reader.unit_activations(run_id, unit_id, step)


@router.get("/runs/{run_id}/units/{unit_id}/examples", summary="Items with the highest and lowest activation of a unit")
def unit_examples(
    run_id: str = Depends(run_path),
    unit_id: int = UnitId,
    task: str | None = Query(None, max_length=64),
    step: int | None = Query(None, ge=0, le=4096),
    n: int = Query(5, ge=1, le=100, description="items per end (top and bottom) and page"),
    offset: int = Query(0, ge=0, le=INT_MAX, description="rank of the first item of the page at each end"),
    reader: StoreReader = Depends(get_reader),
) -> dict[str, Any]:
    """Ranks offset..offset+n-1 from each end, per (task, step); `total` is the number of ranked items."""
    return reader.unit_examples(run_id, unit_id, task, step, n, offset)


@router.get("/runs/{run_id}/interventions", summary="Batch intervention conditions of the run with their mean metrics")
def interventions(
    run_id: str = Depends(run_path),
    experiment: Literal["ablation", "steering", "dose"] | None = None,
    input_task: str | None = Query(None, max_length=64),
    language: str | None = Query(None, max_length=16),
    step: int | None = StepQ,
    reader: StoreReader = Depends(get_reader),
) -> dict[str, Any]:
    """One row per condition (experiment, input task, step, concept language, unit source, set kind, k, its spec)
    with mean output-language probabilities and quality; baselines have set_kind `baseline` and no step."""
    return reader.interventions(run_id, experiment, input_task, language, step)


@router.get("/runs/{run_id}/interventions/{experiment_id}/outputs",
            summary="Per-item outputs and metrics of one batch intervention condition")
def intervention_outputs(
    run_id: str = Depends(run_path),
    experiment_id: int = Path(ge=0, le=INT_MAX),
    limit: int = limit_query(100),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict[str, Any]:
    check_page_limit(state, limit)
    return reader.intervention_outputs(run_id, experiment_id, limit, offset)


@router.get("/runs/{run_id}/examples", response_model=ExamplePage, summary="Corpus examples, filtered and paginated")
def examples(
    run_id: str = Depends(run_path),
    lang: str | None = Query(None, max_length=16),
    has_audio: bool | None = None,
    sentence_id: str | None = Query(None, max_length=200),
    limit: int = limit_query(50),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict:
    check_page_limit(state, limit)
    return reader.examples(run_id, lang, has_audio, sentence_id, limit, offset)


@router.get("/runs/{run_id}/examples/{example_id:path}", summary="One example and every task's output for it")
def example(run_id: str = Depends(run_path), example_id: str = Path(max_length=500), reader: StoreReader = Depends(get_reader)) -> dict[str, Any]:
    return reader.example(run_id, example_id)
