"""The capacity plan: its byte figures match a real small run, FLEURS is planned from its split sizes when not local,
and precompute stops before writing anything when the disk or memory cannot hold the run."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from precompute import plan as plan_mod
from precompute.config import load_run_config
from precompute.plan import ResourceError, make_plan


def _config(root: Path, **over) -> Path:
    cfg = {"name": "plancheck", "model": "tiny-random", "device": "cpu", "tasks": ["asr", "s2tt", "t2tt", "en2x_t2tt"],
           "steps": [2, 7], "corpus": {"source": "builtin", "languages": ["eng", "deu", "fra"], "max_sentences": 4},
           "shard_size": 8, "batch_size": 8, "store": str(root / "atlas.duckdb"), "work_dir": str(root / "work"),
           "analysis": {"ks": [5, 10], "seed": 0}, "evaluate": {"enabled": False}, **over}
    (root / "run.yaml").write_text(json.dumps(cfg))
    return root / "run.yaml"


@pytest.mark.slow
def test_plan_bytes_match_a_real_run(tmp_path, tiny_bundle):
    from precompute.analysis import plan_phases
    from precompute.pipeline import run_precompute

    cfg = load_run_config(_config(tmp_path, keep_activations=True))
    plan = make_plan(cfg, bundle=tiny_bundle, flops=False)
    result = run_precompute(cfg, progress=False, bundle=tiny_bundle)
    work = Path(result.work_dir)
    shards = defaultdict(int)
    for f in (work / "shards").rglob("*.npy"):
        shards[(f.relative_to(work / "shards").parts[0], f.stem)] += f.stat().st_size
    for a in plan.arrays:
        name = a.stack if a.step is None else f"text_decoder.step{a.step}"
        assert a.bytes == pytest.approx(shards[(a.task, name)], rel=0.10), (a.task, name)
    assert len(plan.arrays) == len(shards)
    recorded = sum(f.stat().st_size for f in (work / "shards").rglob("*") if f.is_file())
    stats = sum(f.stat().st_size for f in (work / "stats").rglob("*") if f.is_file())
    assert plan.activation_bytes == pytest.approx(recorded, rel=0.10)
    assert plan.stats_bytes == pytest.approx(stats, rel=0.10)
    assert plan.peak_work_bytes == pytest.approx(recorded + stats, rel=0.10)  # keep_activations: all of them stay
    # by default a phase's arrays go once its statistics are in: the peak is the largest phase's shards
    lean = make_plan(load_run_config(_config(tmp_path)), bundle=tiny_bundle, flops=False)
    largest = max(sum(b for (task, _), b in shards.items() if task in tasks) for tasks in plan_phases(cfg.tasks, cfg.mode))
    assert largest < recorded
    assert lean.peak_work_bytes == pytest.approx(largest + stats, rel=0.10)
    assert plan.store_bytes == pytest.approx(result.store.stat().st_size, rel=0.10)
    con = duckdb.connect(str(result.store), read_only=True)
    try:
        counts = dict(con.execute("SELECT task, count(*) FROM items GROUP BY task").fetchall())
    finally:
        con.close()
    assert plan.items == counts


def test_fleurs_not_local_is_planned_from_its_split_size(tmp_path, tiny_bundle):
    cfg = load_run_config(_config(tmp_path, tasks=["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"], steps=[2, 7, 12],
                                  corpus={"source": "fleurs", "fleurs_dataset": "google/fleurs", "fleurs_split": "test",
                                          "languages": ["eng", "deu", "spa", "fra", "jpn", "cmn"]}))
    plan = make_plan(cfg, bundle=tiny_bundle, flops=False)
    assert plan.items == {"asr": 350 * 6, "s2tt": 350 * 5, "t2tt": 350 * 5, "en2x_s2tt": 350 * 5, "en2x_t2tt": 350 * 5}
    assert "FLEURS test split size" in plan.items_source
    dec = next(a for a in plan.arrays if a.task == "s2tt" and a.step == 12)
    assert dec.bytes == 1750 * dec.units * 4
    text = "\n".join(plan.lines())
    assert "peak working disk" in text and "final store" in text and "GPU memory" in text


def test_flops_are_counted_on_the_model(tmp_path, tiny_bundle):
    cfg = load_run_config(_config(tmp_path, tasks=["s2tt", "t2tt"]))
    plan = make_plan(cfg, bundle=tiny_bundle, flops=True)
    assert plan.flops_per_item["s2tt"] > plan.flops_per_item["t2tt"] > 0
    assert plan.gpu_seconds == pytest.approx(
        sum(plan.flops_per_item[t] * n for t, n in plan.items.items()) / (989e12 * plan.utilisation))


def test_precompute_stops_before_writing_when_the_disk_is_short(tmp_path, tiny_bundle, monkeypatch):
    from precompute.pipeline import run_precompute

    cfg = load_run_config(_config(tmp_path))
    usage = plan_mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(plan_mod.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000))
    with pytest.raises(ResourceError) as err:
        run_precompute(cfg, progress=False, bundle=tiny_bundle)
    message = str(err.value)
    assert "not enough disk" in message and "1.00 MB is free" in message and "activation_dtype" in message
    assert not (tmp_path / "work").exists() and not (tmp_path / "atlas.duckdb").exists()
    monkeypatch.undo()
    monkeypatch.setattr(plan_mod, "_available_ram", lambda: 1_000_000)
    monkeypatch.setattr(plan_mod, "_process_rss", lambda: 0)
    with pytest.raises(ResourceError, match="not enough memory.*1.00 MB is available"):
        run_precompute(cfg, progress=False, bundle=tiny_bundle)
    assert not (tmp_path / "work").exists()


def test_memory_check_counts_what_the_process_already_holds(tmp_path, tiny_bundle, monkeypatch):
    """precompute checks after loading the model, which the plan's RAM figure includes: the process's own resident
    memory counts as available to the run, or a model that fits would be refused for holding itself."""
    cfg = load_run_config(_config(tmp_path))
    plan = make_plan(cfg, bundle=tiny_bundle, flops=False)
    monkeypatch.setattr(plan_mod, "_available_ram", lambda: plan.ram_bytes // 2)
    monkeypatch.setattr(plan_mod, "_process_rss", lambda: plan.ram_bytes // 2 + 1)
    plan_mod.check_resources(plan, cfg)
    monkeypatch.setattr(plan_mod, "_process_rss", lambda: 0)
    with pytest.raises(ResourceError, match="already held by this process"):
        plan_mod.check_resources(plan, cfg)


def test_plan_command_prints_the_plan(capsys):
    from neuron_atlas.cli import main

    assert main(["plan", "--config", "tiny", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "items per task" in out and "asr" in out and "this machine:" in out


def test_cluster_plan_is_the_single_machine_plan_shared_by_n_gpus(tmp_path, tiny_bundle):
    from precompute.analysis import chunk_units
    from precompute.cluster_plan import cluster_plan

    cfg = load_run_config(_config(tmp_path))
    plan = make_plan(cfg, bundle=tiny_bundle, flops=True)
    one, four = cluster_plan(plan, 1), cluster_plan(plan, 4, cpus_per_node=2)
    assert plan.gpu_seconds > 0 and one.recording_seconds == pytest.approx(plan.gpu_seconds)
    assert four.recording_seconds == pytest.approx(plan.gpu_seconds / 4)
    assert four.items_per_gpu == -(-sum(plan.items.values()) // 4) and (four.nodes, four.cpus) == (4, 8)
    assert four.work_peak_bytes == one.work_peak_bytes == plan.peak_work_bytes  # a local (shared) path holds the same
    for task in ("asr", "s2tt", "t2tt"):  # float32 results: the task's recorded arrays, item by item
        recorded = sum(a.bytes for a in plan.arrays if a.task == task)
        assert plan.result_bytes_per_item[task] * plan.items[task] == recorded
    largest = max(plan.result_bytes_per_item[t] + plan.audio_bytes_per_item[t] for t in plan.items)
    assert four.object_store_bytes == 4 * cfg.shard_size * largest
    assert sum(a.cpu_seconds for a in plan.stats_arrays) == pytest.approx(plan.stats_cpu_seconds)
    for a in plan.stats_arrays:
        assert a.chunk_units == chunk_units(cfg, a.columns, a.units) and a.chunks == -(-a.units // a.chunk_units)
    assert four.stats_seconds <= one.stats_seconds * 1.0001
    assert four.transfer_seconds == pytest.approx(four.result_bytes / 1.25e9)  # 10 Gbit/s
    assert four.wall_seconds == pytest.approx(max(four.recording_seconds, four.transfer_seconds) + four.stats_seconds)
    slow_link = cluster_plan(plan, 4, driver_gbit=1e-6)  # a link this slow bounds the recording
    assert slow_link.wall_seconds == pytest.approx(slow_link.transfer_seconds + slow_link.stats_seconds)
    assert "(bound by the driver link)" in "\n".join(slow_link.lines())
    text = "\n".join(four.lines())
    assert "Ray cluster of 4 GPUs (4 nodes x 1 GPU, 2 CPUs each" in text and "driver merge memory" in text
    assert f"work_dir {cfg.work_dir}: peak" in text and "items/s over the cluster" in text

    # chunks follow analysis.chunk_units; a remote work_dir holds only the shards, the statistics stay on the driver
    small = make_plan(load_run_config(_config(tmp_path, analysis={"ks": [5, 10], "chunk_units": 7},
                                              work_dir="memory://plancheck/work")), bundle=tiny_bundle, flops=False)
    assert all(a.chunks == -(-a.units // 7) for a in small.stats_arrays)
    remote = cluster_plan(small, 2)
    assert remote.work_peak_bytes == small.held_bytes < small.peak_work_bytes and remote.recording_seconds is None
    assert "beside the store" in "\n".join(remote.lines()) and "not computed (--no-flops)" in "\n".join(remote.lines())


def test_cluster_plan_refuses_a_cluster_of_no_gpus(capsys):
    from neuron_atlas.cli import main
    from precompute.cluster_plan import check_cluster
    from precompute.config import ConfigError

    with pytest.raises(ConfigError, match="--gpus must be a whole number of at least 1, not 0"):
        check_cluster(0)
    with pytest.raises(ConfigError, match="--cpus-per-node must be .* not -2"):
        check_cluster(8, cpus_per_node=-2)
    with pytest.raises(ConfigError, match="--driver-gbit must be positive, not 0"):
        check_cluster(8, driver_gbit=0)
    assert main(["plan", "--config", "tiny", "--no-flops", "--gpus", "0"]) == 2
    assert "--gpus must be a whole number of at least 1, not 0" in capsys.readouterr().err
    assert main(["plan", "--config", "tiny", "--no-flops", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "on a Ray cluster of 2 GPUs" in out and "statistics:" in out and "this machine:" in out


def test_fleurs_102_config_plans_every_seamless_fleurs_language(tiny_bundle):
    from neuron_atlas.resources import config_path
    from precompute.cluster_plan import cluster_plan
    from precompute.corpus.fleurs import SEAMLESS_FLEURS_LANGUAGES

    cfg = load_run_config(config_path("fleurs-102"), {"model": "tiny-random"})
    assert (cfg.executor, cfg.activation_dtype, cfg.corpus.source) == ("ray", "float16", "fleurs")
    assert sorted(cfg.corpus.languages) == sorted(SEAMLESS_FLEURS_LANGUAGES) and len(cfg.corpus.languages) == 89
    cfg.corpus = cfg.corpus.model_copy(update={"max_sentences": 12})  # split sizes, capped: the test stays fast
    plan = make_plan(cfg, bundle=tiny_bundle, flops=False)
    assert plan.items == {"asr": 89 * 12, "s2tt": 88 * 12, "t2tt": 88 * 12, "en2x_s2tt": 88 * 12, "en2x_t2tt": 88 * 12}
    assert "FLEURS test split size (12 sentence ids" in plan.items_source
    cluster = cluster_plan(plan, cfg.workers)
    assert cluster.gpus == 8 and cluster.work_peak_bytes == plan.peak_work_bytes
    assert f"shared work_dir {cfg.work_dir}" in "\n".join(cluster.lines())


def test_a_work_dir_without_its_driver_is_planned_but_not_run(tmp_path, capsys):
    """The plan sizes a run for the cluster's drivers (s3fs, ...), so a URL this machine cannot open still plans; the
    config stays refused for a run."""
    from neuron_atlas.cli import main
    from precompute.config import ConfigError

    path = _config(tmp_path, work_dir="nosuchfs://bucket/work", executor="ray", workers=2)
    with pytest.raises(ConfigError, match="work_dir 'nosuchfs://bucket/work': fsspec cannot open nosuchfs://"):
        load_run_config(path)
    assert main(["plan", "--config", str(path), "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "on a Ray cluster of 2 GPUs" in out and "(statistics files stay on the driver)" in out and "beside the store" in out
    assert "work_dir nosuchfs://bucket/work: fsspec cannot open nosuchfs:// here" in out and "this machine: fits" in out
    assert main(["precompute", "--config", str(path)]) == 2
    assert "fsspec cannot open nosuchfs://" in capsys.readouterr().err
