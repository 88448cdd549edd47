"""A tiny-model store holding two runs (clean and faithful recording of the same corpus), for the run comparison tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.backend.api_support import LANGS

#: Runs derived from the clean run in `compare_store`: every unit id shifted, and every site renamed.
SHIFTED = "cmp-shifted-000000000000"
RENAMED = "cmp-renamed-000000000000"
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


def derive_runs(store: Path, source: str) -> dict:
    """Add two runs derived from run `source` to `store`: `SHIFTED` drops the first site (so every unit id moves),
    gives another site one more channel and has no t2tt/fra concept at step 7; `RENAMED` renames every site (no site
    in common with any run). Returns what SHIFTED changed."""
    con = duckdb.connect(str(store))
    sites = con.execute("SELECT * FROM sites WHERE run_id = ? ORDER BY unit_offset", [source]).df()
    dropped, widened = sites.iloc[0], sites.iloc[5]
    new = sites.iloc[1:].copy()
    new.loc[new["site"] == widened["site"], "width"] += 1
    new["unit_offset"] = np.concatenate([[0], np.cumsum(new["width"].to_numpy())[:-1]])
    # old unit id -> new unit id for the units kept (the widened site keeps its channels at the start)
    old_start = sites.set_index("site")["unit_offset"]
    shift = pd.DataFrame({"site": new["site"], "delta": new["unit_offset"].to_numpy() - old_start[new["site"]].to_numpy(),
                          "start": old_start[new["site"]].to_numpy(), "width": sites.set_index("site").loc[new["site"], "width"].to_numpy()})
    con.register("_sites", new.assign(run_id=SHIFTED))
    con.register("_shift", shift)
    for rid in (SHIFTED, RENAMED):
        con.execute("INSERT INTO runs SELECT * REPLACE (? AS run_id, ? AS name) FROM runs WHERE run_id = ?", [rid, rid, source])
        con.execute("INSERT INTO concepts SELECT * REPLACE (? AS run_id) FROM concepts WHERE run_id = ? AND NOT "
                    "(? = ? AND task = 't2tt' AND language = 'fra' AND step = 7)", [rid, source, rid, SHIFTED])
    con.execute("INSERT INTO sites SELECT * FROM _sites")
    con.execute("INSERT INTO unit_stats SELECT u.* REPLACE (? AS run_id, u.unit_id + s.delta AS unit_id) FROM unit_stats u "
                "JOIN _shift s ON u.unit_id >= s.start AND u.unit_id < s.start + s.width WHERE u.run_id = ?", [SHIFTED, source])
    con.execute("INSERT INTO sites SELECT * REPLACE (? AS run_id, 'renamed.' || site AS site) FROM sites WHERE run_id = ?",
                [RENAMED, source])
    con.execute("INSERT INTO unit_stats SELECT * REPLACE (? AS run_id) FROM unit_stats WHERE run_id = ?", [RENAMED, source])
    con.close()
    return {"dropped": dropped["site"], "widened": widened["site"], "dropped_width": int(dropped["width"]),
            "widened_width": int(widened["width"]), "widened_offset": int(widened["unit_offset"])}


@pytest.fixture(scope="session")
def compare_store(two_run_store, tmp_path_factory) -> tuple[Path, str, str, dict]:
    """(store, clean run, faithful run, what SHIFTED changed): a copy of the two-run store with `derive_runs` added."""
    path, clean, faithful = two_run_store
    copy = tmp_path_factory.mktemp("compare") / "atlas.duckdb"
    shutil.copy(path, copy)
    return copy, clean, faithful, derive_runs(copy, clean)
