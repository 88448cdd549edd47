"""The run configuration (`run.yaml`): model, mode, tasks, steps, corpus, analysis; typos and bad values fail early."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from precompute.corpus import CorpusConfig
from neuron_atlas.engine.record import DEFAULT_STEPS
from neuron_atlas.engine.tasks import TASKS


class ConfigError(ValueError):
    """The run configuration is unusable; the message names the file, the field and the problem."""


class AnalysisConfig(BaseModel):
    """Statistics computed after recording (selectivity, selections, concentration, cross-modal)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ks: list[int] = Field(default_factory=lambda: [1000, 2000])
    seed: int = 0
    chunk_units: int | None = Field(None, ge=1, description="units per statistics chunk (job); default: ~512 MB of "
                                                            "float32 per chunk. Results do not depend on it")

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(ks))


class EvaluateConfig(BaseModel):
    """Batch intervention experiments run after the statistics (see precompute/evaluate.py)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    experiments: list[Literal["ablation", "steering", "dose"]] = Field(default_factory=lambda: ["ablation", "steering", "dose"])
    n_examples: int = Field(100, ge=1)
    steps: list[int] | None = Field(None, description="steps whose units are intervened; default: every recorded step")
    k: int | None = Field(None, ge=1, description="units per set; default: the smallest analysis k")
    dose_ks: list[int] = Field(default_factory=lambda: [10, 100, 1000, 2000])
    value: Literal["on_p50", "on_p90", "off_mean", "off_p50", "zero"] = "on_p50"
    stack: Literal["speech_encoder", "text_encoder", "text_decoder"] = "text_decoder"
    max_new_tokens: int = Field(128, ge=1, le=1024)
    identifier: str = Field("langid", description="langid (py3langid, in its wheel) | fasttext:/path/to/lid.176.bin")
    language_scope: Literal["all", "candidates"] = Field(
        "all", description="all: the identifier's posterior over every language it knows, read at the corpus languages "
                           "(the reference's reading; gibberish or another language keeps its mass elsewhere); "
                           "candidates: renormalised over the corpus languages")

    @model_validator(mode="before")
    @classmethod
    def _removed_seed(cls, data):
        if isinstance(data, dict) and "seed" in data:
            raise ValueError("evaluate.seed was removed: random controls use the seeds of the run's stored random sets, "
                             "set by analysis.seed; delete evaluate.seed from the config")
        return data

    @field_validator("dose_ks")
    @classmethod
    def _dose_positive(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError("dose_ks must be positive integers")
        return sorted(set(ks))


class RunConfig(BaseModel):
    """Everything that defines a precompute run; its hash (with model and corpus checksums) is the run id."""

    model_config = ConfigDict(extra="forbid")
    name: str = "atlas"
    model: str = "demo"
    device: str = "auto"
    mode: Literal["clean", "faithful"] = "clean"
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    steps: list[int] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    batch_size: int = Field(16, ge=1, le=1024)
    shard_size: int = Field(64, ge=1)
    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1, le=256)
    store: Path = Path("data/atlas.duckdb")
    work_dir: str = Field("data/work", description="where activation shards go: a local path or any fsspec URL "
                                                    "(file://, memory://, s3://...; the driver must be installed)")
    activation_dtype: Literal["float32", "float16"] = Field(
        "float32", description="storage dtype of recorded activations; float16 halves the working disk")
    keep_activations: bool = Field(False, description="keep the recorded activations after their statistics are in "
                                                      "(default: each phase's arrays are deleted once its statistics are written)")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}; known tasks: {', '.join(TASKS)}")
        if not tasks:
            raise ValueError("at least one task is needed")
        return list(dict.fromkeys(tasks))

    @field_validator("steps")
    @classmethod
    def _valid_steps(cls, steps: list[int]) -> list[int]:
        if not steps or any(s < 2 or s > 256 for s in steps):
            raise ValueError("steps are decoder prefix lengths between 2 (</s> + language token) and 256")
        return sorted(set(steps))

    @field_validator("work_dir", mode="before")
    @classmethod
    def _reachable_work_dir(cls, work_dir, info: ValidationInfo) -> str:
        import fsspec

        work_dir = str(work_dir)
        if (info.context or {}).get("plan_only"):  # `neuron-atlas plan` sizes a run for another machine's drivers
            return work_dir
        protocol = fsspec.core.split_protocol(work_dir)[0] or "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"work_dir {work_dir!r}: fsspec cannot open {protocol}:// here ({exc})") from None
        return work_dir

    @model_validator(mode="after")
    def _shared_work_dir(self) -> RunConfig:
        import fsspec

        if self.executor == "ray" and fsspec.core.split_protocol(self.work_dir)[0] == "memory":
            raise ValueError("work_dir: a memory:// folder lives in one process; Ray tasks read the shards from "
                             "work_dir, so give it a location every node can read (a shared path, s3://...)")
        return self

    def identity(self) -> dict:
        """The fields that change results (not paths, device or storage lifetime), for the run id; float32 storage is
        the default and leaves older run ids as they were."""
        data = self.model_dump(mode="json", exclude={"store", "work_dir", "device", "name", "executor", "workers",
                                                     "keep_activations", "activation_dtype"})
        data["analysis"].pop("chunk_units")
        if self.activation_dtype != "float32":
            data["activation_dtype"] = self.activation_dtype
        return data

    def digest(self, *extra: str) -> str:
        h = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode())
        for e in extra:
            h.update(e.encode())
        return h.hexdigest()[:12]


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: `run.yaml: corpus.languages: unknown language 'xx' ...`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_run_config(path: Path | None, overrides: dict | None = None, plan_only: bool = False) -> RunConfig:
    """Read a YAML run config (or defaults when `path` is None) and apply command-line overrides; `plan_only` accepts a
    work_dir whose fsspec driver is not installed here (the plan needs no access to it; a run does)."""
    data: dict = {}
    source = str(path) if path else "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a mapping of settings, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return RunConfig.model_validate(data, context={"plan_only": plan_only})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
