"""Run comparison routes: two runs of the store side by side (modes, models, corpora, or two steps of one run)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import INT_MAX, get_reader
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.store.compare import DEFAULT_MAX_POINTS, DEFAULT_MOVED, compare_concept, compare_runs
from backend.store.reader import NotFoundError, StoreReader

router = APIRouter(tags=["compare"], responses=errors(404, 422, 503))

StackName = Literal["speech_encoder", "text_encoder", "text_decoder"]
RunA = Query(max_length=200, description="run A (see GET /runs), or `latest`")
RunB = Query(max_length=200, description="run B (may equal run A, to compare two steps of one run), or `latest`")
StepA = Query(None, ge=0, le=4096, description="decoder prefix length on run A's side (default: A's first step)")
StepB = Query(None, ge=0, le=4096, description="decoder prefix length on run B's side (default: step_a when B has it)")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class LayerDifferences(_Open):
    stack: str
    threshold: float
    layers: list[int]
    units_per_layer: list[int] = Field(description="common units per layer")
    concepts: list[dict[str, Any]] = Field(description="matched concept pairs with statistics for the stack (rows)")
    count_a: list[list[int]] = Field(description="count_a[i][j]: units of pair i, layer j with AP >= threshold in run A")
    count_b: list[list[int]]
    diff: list[list[int]] = Field(description="count_b - count_a")


class RunComparison(_Open):
    run_a: str
    run_b: str
    step_a: int
    step_b: int
    same_model: bool
    sites: dict[str, Any] = Field(description="common sites and units (same key and width) and the ones left out")
    concepts: list[dict[str, Any]] = Field(description="concept pairs matched by kind, task, language and modality")
    unmatched_a: list[dict[str, Any]]
    unmatched_b: list[dict[str, Any]]
    layers: LayerDifferences


class ConceptComparison(_Open):
    run_a: str
    run_b: str
    concept_a: dict[str, Any]
    concept_b: dict[str, Any]
    stacks: list[str]
    n_units: int = Field(description="common units with an AP in both runs")
    spearman_rho: float | None
    top_k: dict[str, Any] = Field(description="k, shared count, Jaccard, and their expectations for two random k-sets")
    moved: list[dict[str, Any]] = Field(description="units with the largest |AP_B - AP_A|, ids in both runs")
    points: dict[str, Any] = Field(description="scatter points as columns (all units, or a seeded sample when sampled)")
    density: dict[str, Any]


def _run_field(reader: StoreReader, run_id: str, field: str) -> str:
    """The run named by query field `field`, checked to exist (`latest` = the newest run); 404 naming the field."""
    try:
        return reader.resolve_run(run_id)
    except NotFoundError as exc:
        raise ApiProblem(404, f"{field}: {exc}", field) from None


@router.get("/compare", response_model=RunComparison,
            summary="Compare two runs: common unit sites, matched concepts, selective-unit counts per layer (B - A)")
def compare(
    run_a: str = RunA,
    run_b: str = RunB,
    step_a: int | None = StepA,
    step_b: int | None = StepB,
    kind: Literal["language", "multimodal_language", "modality"] | None = Query(None, description="only concepts of this kind"),
    task: str | None = Query(None, max_length=64, description="only concepts of this task"),
    stack: StackName | None = Query(None, description="stack of the per-layer counts (default: the decoder)"),
    threshold: float = Query(0.9, ge=0.0, le=1.0, allow_inf_nan=False, description="a unit is selective when AP >= threshold"),
    reader: StoreReader = Depends(get_reader),
) -> dict:
    """Runs of different models are compared over the sites they share (same site key and width); `sites` says how
    many sites and units that is and which are left out. Concepts are matched by (kind, task, language, modality)
    between `step_a` in A and `step_b` in B."""
    a, b = _run_field(reader, run_a, "run_a"), _run_field(reader, run_b, "run_b")
    return compare_runs(reader, a, b, step_a, step_b, kind, task, stack, threshold)


@router.get("/compare/concept", response_model=ConceptComparison,
            summary="One concept in two runs: AP scatter, Spearman's rho, top-k overlap vs chance, units that moved most")
def compare_one_concept(
    run_a: str = RunA,
    run_b: str = RunB,
    concept_id: int = Query(ge=0, le=INT_MAX, description="the concept in run A (its step is A's step)"),
    step_b: int | None = StepB,
    stack: StackName | None = Query(None, description="only this stack (default: every stack both concepts have)"),
    k: int | None = Query(None, ge=1, le=INT_MAX, description="top-k set size (default: run A's smallest analysis k)"),
    n_moved: int = Query(DEFAULT_MOVED, ge=0, le=500, description="units that moved most to list"),
    max_points: int = Query(DEFAULT_MAX_POINTS, ge=0, le=50_000, description="scatter points sent (a seeded sample above it)"),
    reader: StoreReader = Depends(get_reader),
) -> dict:
    """The concept's counterpart in run B is the concept with the same kind, task, language and modality at `step_b`
    (422 naming `concept_id` when B has none)."""
    a, b = _run_field(reader, run_a, "run_a"), _run_field(reader, run_b, "run_b")
    return compare_concept(reader, a, b, concept_id, step_b, stack, k, n_moved, max_points)
