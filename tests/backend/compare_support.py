"""A tiny-model store holding two runs (clean and faithful recording of the same corpus), for the run comparison tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backend.api_support import LANGS

_BUILT: dict[str, tuple[Path, str, str]] = {}


def build_two_run_store(root: Path, bundle) -> tuple[Path, str, str]:
    """Precompute the tiny model twice into one store (clean, then faithful mode; steps 2 and 7; no batch
    experiments) once per session; returns (store, clean run id, faithful run id)."""
    if "store" in _BUILT:
        return _BUILT["store"]
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    root.mkdir(parents=True, exist_ok=True)
    run_ids = []
    for mode in ("clean", "faithful"):
        cfg = {
            "name": f"cmp-{mode}", "model": "tiny-random", "device": "cpu", "mode": mode,
            "tasks": ["s2tt", "t2tt"], "steps": [2, 7],
            "corpus": {"source": "builtin", "languages": LANGS, "max_sentences": 6},
            "shard_size": 6, "batch_size": 6, "store": str(root / "atlas.duckdb"), "work_dir": str(root / f"work-{mode}"),
            "analysis": {"ks": [5, 10], "seed": 0}, "evaluate": {"enabled": False},
        }
        (root / f"{mode}.yaml").write_text(json.dumps(cfg))
        run_ids.append(run_precompute(load_run_config(root / f"{mode}.yaml"), progress=False, bundle=bundle).run_id)
    _BUILT["store"] = (root / "atlas.duckdb", run_ids[0], run_ids[1])
    return _BUILT["store"]


@pytest.fixture(scope="session")
def two_run_store(tmp_path_factory, tiny_bundle) -> tuple[Path, str, str]:
    """(store path, clean run id, faithful run id) of the session's two-run tiny store."""
    return build_two_run_store(tmp_path_factory.getbasetemp() / "compare-store", tiny_bundle)
