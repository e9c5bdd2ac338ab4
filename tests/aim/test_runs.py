"""The AIM run as AIM users see it: series and contexts, repeats, params, labels, status, resume, imports.

Everything is read back through aim's own SDK (``aim.Repo``), never through the backend.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aim
from aim.storage.context import Context
from conftest import read_aim_run

import tracelet
from tracelet.records import Histogram, Text
from tracelet.run import Run
from tracelet_aim import AimBackend
from tracelet_aim.mapping import nest_params

Start = Callable[..., Run]


def _start(tracelet_start: Start, repo: Path, core: dict[str, Any] | None = None, **settings: Any) -> Run:
    """A run delivering to AIM only, in the repository ``repo``; ``core`` settings, and AIM settings as keywords."""
    config = {"aim": {"repo": str(repo), **settings}}
    return tracelet_start(project="proj", name="first-run", backends=["aim"], config=config, **(core or {}))


def _finish(run: Run, status: str = "FINISHED") -> str:
    assert run.stop(status, timeout=60), run.stats()["aim"]
    backend = run.get_plugin("aim")
    assert isinstance(backend, AimBackend)
    assert backend.run_hash is not None
    return backend.run_hash


def _aim_run(repo: Path, run_hash: str) -> Any:
    run = aim.Repo.from_path(str(repo)).get_run(run_hash)
    assert run is not None, "the closed run must be visible to aim.Repo right after stop()"
    return run


def _series(run: Any) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """``(name, context as JSON) -> [(step, value)]`` of every metric sequence, as AIM stores it."""
    found = {}
    for name, context, _ in run.iter_sequence_info_by_type(("float", "int")):
        steps, (values, _, _) = run.get_metric(name, context).data.items_list()
        found[(name, json.dumps(context.to_dict(), sort_keys=True))] = sorted(zip(steps, values, strict=True))
    return found


def test_series_names_contexts_and_repeats_as_aim_stores_them(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = _start(tracelet_start, repo)
    base = float(int(time.time()) - 60)
    run.log_metric("train/loss", 1.0, step=0, timestamp=base)
    run.log_metric("train/loss", 0.5, step=1, timestamp=base + 1)
    run.log_metric("val/loss", 0.7, step=1, timestamp=base + 2)
    run.log_metric("lr", 0.1, step=0, timestamp=base + 3)
    run.log_metric("eval/acc", 0.9, step=1, timestamp=base + 4)  # "eval" is not a configured subset
    run.log_metric("lr", 0.2, step=0, timestamp=base + 5)  # step 0 again: a repeat, not an overwrite
    run.log_metric("lr", 0.3, step=0, timestamp=base + 6)
    run_hash = _finish(run)
    stored = _aim_run(repo, run_hash)
    assert _series(stored) == {
        ("loss", '{"subset": "train"}'): [(0, 1.0), (1, 0.5)],
        ("loss", '{"subset": "val"}'): [(1, 0.7)],
        ("eval/acc", "{}"): [(1, 0.9)],
        ("lr", "{}"): [(0, 0.1)],
        ("lr", '{"repeat": 2}'): [(0, 0.2)],
        ("lr", '{"repeat": 3}'): [(0, 0.3)],
    }
    assert stored.get_metric("lr", Context({})).data.items_list()[1][2] == [base + 3]  # the record's own time
    back = read_aim_run(repo, run_hash)
    assert back.metrics["lr"] == [(0, 0.1, base + 3), (0, 0.2, base + 5), (0, 0.3, base + 6)]
    assert sorted(back.metrics) == ["eval/acc", "lr", "train/loss", "val/loss"]


def test_subsets_setting(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = _start(tracelet_start, repo, subsets=["eval", "train"])
    run.log_metric("eval/acc", 0.9, step=1)
    run.log_metric("val/acc", 0.8, step=1)
    assert set(_series(_aim_run(repo, _finish(run)))) == {("acc", '{"subset": "eval"}'), ("val/acc", "{}")}


def test_run_identity_params_tags_labels(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = _start(tracelet_start, repo)
    run.log_params({"optim": {"lr": 0.001, "betas": {"b1": 0.9}}, "epochs": 10, "huge": 2**70})
    run.log_params({"epochs": 12})
    run.set_tags({"team": "vision", "git.commit": "abc123"})
    run.set_tags({"team": "audio"})
    run_hash = _finish(run, "FAILED")
    stored = _aim_run(repo, run_hash)
    assert stored.name == "first-run"
    assert stored.experiment == "proj"
    assert stored["hparams"] == {"optim": {"lr": 0.001, "betas": {"b1": 0.9}}, "epochs": 12, "huge": str(2**70)}
    assert stored["tags"] == {"team": "audio", "git.commit": "abc123"}
    assert stored.props.tags == ["team:audio"]  # AIM labels: the user's tags, their latest value only
    tracelet_info = stored["tracelet"]
    assert tracelet_info["status"] == "FAILED"
    assert tracelet_info["run_id"] == run.id
    assert tracelet_info["version"] == tracelet.__version__
    assert stored.active is False
    assert run.get_plugin("aim").adjustments == {"int_param_as_text": 1}  # type: ignore[union-attr]


def test_nest_params_reverses_exactly() -> None:
    from tracelet_aim.mapping import flatten_params

    flat = {"optim": 1, "optim.lr": 2, "a.b": 3, "a.b.c": 4, "x..y": 5, "p.q": 6, "p.r": None, ".lead": 7, "trail.": 8}
    tree = nest_params(flat)
    assert tree == {
        "optim": 1,
        "optim.lr": 2,
        "a": {"b": 3},
        "a.b.c": 4,
        "x..y": 5,
        "p": {"q": 6, "r": None},
        ".lead": 7,
        "trail.": 8,
    }
    assert flatten_params(tree) == flat


def test_non_uniform_histogram_keeps_its_exact_bins(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = _start(tracelet_start, repo)
    edges, counts = (0.0, 0.1, 1.0, 10.0), (1.0, 2.0, 3.0)
    run.log_record(Histogram("w", edges, counts, 0.05, 9.0, 20.0, 6, 100.0, 3, time.time()))
    run.log_record(Histogram("w", (0.0, 1.0, 2.0), (4.0, 5.0), 0.0, 2.0, 7.0, 9, 9.0, 4, time.time()))
    run_hash = _finish(run)
    stored = _aim_run(repo, run_hash)
    distribution = stored.get_distribution_sequence("w", Context({})).data.items_list()[1][0][0]
    assert (distribution.range, list(distribution.weights)) == ([0.0, 10.0], [1.0, 2.0, 3.0])  # AIM: uniform bins implied
    exact = stored.get_text_sequence("w", Context({"tracelet": "histogram"})).data.items_list()
    assert exact[0] == [3]  # only the non-uniform one has its bins kept beside it
    assert json.loads(exact[1][0][0].data) == {"edges": list(edges), "counts": list(counts)}
    assert [(h.step, h.edges) for h in read_aim_run(repo, run_hash).histograms["w"]] == [(3, edges), (4, (0.0, 1.0, 2.0))]


def test_a_name_used_by_two_kinds_is_refused_permanently(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = _start(tracelet_start, repo, core={"retry_attempts": 3})
    run.log_metric("x", 1.0, step=0)
    assert run.flush(60)
    run.log_record(Text("x", "a text under a metric's name", 1, time.time()))
    assert run.flush(60) is False
    run.log_metric("after", 2.0, step=0)
    assert run.stop(timeout=60) is False
    stats = run.stats()["aim"]
    assert (stats.failed, stats.retries) == (1, 0), stats
    assert "Incompatible data types" in (stats.last_error or "")
    assert stats.run_id is not None
    stored = read_aim_run(repo, stats.run_id)
    assert [point[:2] for point in stored.metrics["after"]] == [(0, 2.0)]
    assert stored.texts == {}


def test_resume_continues_repeats_without_overwriting(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = _start(tracelet_start, repo)
    first.log_metric("m", 1.0, step=0)
    first.log_metric("m", 2.0, step=0)
    first.log_params({"a": 1})
    first.set_tags({"team": "vision"})
    run_hash = _finish(first)
    assert _series(_aim_run(repo, run_hash)) == {("m", "{}"): [(0, 1.0)], ("m", '{"repeat": 2}'): [(0, 2.0)]}
    second = _start(tracelet_start, repo, run_hash=run_hash)
    second.log_metric("m", 3.0, step=0)
    second.log_metric("m", 4.0, step=1)
    second.log_params({"b": 2})
    assert _finish(second, "KILLED") == run_hash
    stored = _aim_run(repo, run_hash)
    assert _series(stored) == {
        ("m", "{}"): [(0, 1.0), (1, 4.0)],
        ("m", '{"repeat": 2}'): [(0, 2.0)],
        ("m", '{"repeat": 3}'): [(0, 3.0)],
    }
    assert stored["hparams"] == {"a": 1, "b": 2}
    assert stored["tracelet"]["status"] == "KILLED"
    assert stored.props.tags == ["team:vision"]
    assert stored.name == "first-run"


def test_unknown_run_hash_fails_the_backend_not_the_script(tracelet_start: Start, tmp_path: Path) -> None:
    run = _start(tracelet_start, tmp_path / "repo", run_hash="0123456789abcdef01234567")
    run.log_metric("loss", 1.0)
    assert not run.stop(timeout=60)
    stats = run.stats()["aim"]
    assert (stats.state, stats.failed, stats.delivered) == ("failed", 1, 0)
    assert "0123456789abcdef01234567" in (stats.last_error or "")


def test_default_repo_is_the_working_directory(tracelet_start: Start, tmp_path: Path) -> None:
    run = tracelet_start(backends=["aim"])  # the fixture's working directory is tmp_path
    run.log_metric("nan", math.nan, step=0)
    run_hash = _finish(run)
    assert (tmp_path / ".aim").is_dir()
    assert _aim_run(tmp_path, run_hash).experiment == tmp_path.name  # the project: the directory's name


def test_discovery_imports_no_aim(tmp_path: Path) -> None:
    code = (
        "import sys, tracelet, tracelet_aim\n"
        "from tracelet.plugins import discover\n"
        "entry = {e.name: e for e in discover()}['aim']\n"
        "assert entry.status == 'loaded' and entry.info.max_batch_size == 1000, entry\n"
        "tracelet_aim.AimBackend(tracelet_aim.AimSettings())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aim', 'aimrocks', 'numpy', 'PIL')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
