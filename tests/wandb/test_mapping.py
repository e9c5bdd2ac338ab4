"""What each Tracelet record becomes in W&B, read back from the offline run's own files (real wandb-core)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from wandb_reader import OfflineRun, read_finished_run

from tracelet.plugin import Histogram, Metric, Param, RunInfo, RunStatus, Tag
from tracelet.run import Run
from tracelet_wandb import WandbBackend, WandbSettings
from tracelet_wandb.naming import MAX_HISTOGRAM_BINS, rebin

STEP = "tracelet/step"
Finish = Callable[..., tuple[WandbBackend, OfflineRun]]


def _series(run: OfflineRun, name: str) -> list[tuple[int, float]]:
    return [(row[STEP], row[name]) for row in run.history if name in row]


def test_every_point_lands_at_its_own_step_whatever_the_order(start_wandb: Callable[..., Run], finish_and_read: Finish) -> None:
    run = start_wandb()
    expected: dict[str, list[tuple[int, float]]] = {"train/loss": [], "train/acc": [], "val/loss": []}
    for step in range(1000):
        run.log_metric("train/loss", 1.0 / (step + 1), step)
        run.log_metric("train/acc", step / 1000, step)
        expected["train/loss"].append((step, 1.0 / (step + 1)))
        expected["train/acc"].append((step, step / 1000))
        if step % 100 == 99:  # validation logged after training, at an earlier step
            for val_step in (step - 99, step - 50):
                run.log_metric("val/loss", val_step * 0.5, val_step)
                expected["val/loss"].append((val_step, val_step * 0.5))
    run.log_metric("train/loss", 7.0, 3)  # a resumed loop: back to step 3, then the same step again
    run.log_metric("train/loss", 8.0, 3)
    expected["train/loss"] += [(3, 7.0), (3, 8.0)]
    backend, stored = finish_and_read(run)
    assert sum(len(points) for points in expected.values()) == 2022
    for name, points in expected.items():
        assert _series(stored, name) == points, name
    # W&B's own _step counts rows; it never goes back, so W&B drops none.
    assert [row["_step"] for row in stored.history] == list(range(len(stored.history)))
    # Every metric is plotted against the Tracelet step.
    assert {"name": STEP, "step_metric": "", "step_sync": False} in stored.defined_metrics
    assert {"name": "*", "step_metric": STEP, "step_sync": True} in stored.defined_metrics
    # The summary holds the last value logged for each name.
    assert stored.summary["train/loss"] == 8.0
    assert stored.summary["val/loss"] == 949 * 0.5
    assert backend.adjustments == {}


def _backend(tmp_path: Path) -> tuple[WandbBackend, RunInfo]:
    """A backend driven through its hooks directly, to see exactly the rows one batch makes."""
    backend = WandbBackend(WandbSettings(dir=str(tmp_path / "direct")))
    (tmp_path / "direct").mkdir()
    info = RunInfo("0" * 32, "direct", "rows", time.time(), "0.1.0", ("wandb",), ("wandb",), backend="wandb")
    backend.tracelet_backend_start(info)
    return backend, info


def test_metrics_sharing_a_step_share_a_row_and_a_repeated_name_starts_a_new_one(tmp_path: Path) -> None:
    backend, _ = _backend(tmp_path)
    now = 1_700_000_000.25
    batch = [
        Metric("loss", 1.0, 0, now),
        Metric("acc", 0.5, 0, now + 0.001),
        Metric("lr", 0.1, 0, now + 0.002),
        Metric("loss", 0.9, 1, now + 1),
        Metric("acc", 0.6, 1, now + 1),
        Metric("acc", 0.65, 1, now + 1.5),  # the same name again at step 1: both values kept
        Metric("loss", 2.0, 0, now + 2),  # back to step 0
    ]
    backend.tracelet_backend_log_metrics(batch)
    backend.tracelet_backend_end(RunStatus.FINISHED)
    assert backend.run_id is not None
    stored = read_finished_run(tmp_path / "direct", backend.run_id)
    rows = [{key: value for key, value in row.items() if key not in ("_step", "_runtime")} for row in stored.history]
    assert rows == [
        {STEP: 0, "_timestamp": now, "loss": 1.0, "acc": 0.5, "lr": 0.1},
        {STEP: 1, "_timestamp": now + 1, "loss": 0.9, "acc": 0.6},
        {STEP: 1, "_timestamp": now + 1.5, "acc": 0.65},
        {STEP: 0, "_timestamp": now + 2, "loss": 2.0},
    ]
    assert stored.exit_codes == [0]


def test_non_finite_values_and_names_w_and_b_reserves(tmp_path: Path) -> None:
    backend, _ = _backend(tmp_path)
    now = time.time()
    backend.tracelet_backend_log_metrics(
        [
            Metric("_step", 5.0, 0, now),
            Metric(STEP, 6.0, 0, now),
            Metric("nan", math.nan, 0, now),
            Metric("inf", -math.inf, 0, now),
        ]
    )
    backend.tracelet_backend_log_metrics([Metric("_step", 7.0, 1, now)])  # renames are counted per record
    backend.tracelet_backend_end(RunStatus.FINISHED)
    assert backend.run_id is not None
    row, second = read_finished_run(tmp_path / "direct", backend.run_id).history
    assert (second[STEP], second["tracelet/_step"]) == (1, 7.0)
    assert row[STEP] == 0
    assert row["_step"] == 0  # W&B's own row counter, not the metric named "_step"
    assert row["tracelet/_step"] == 5.0
    assert row["tracelet/tracelet/step"] == 6.0
    assert math.isnan(row["nan"])
    assert row["inf"] == -math.inf
    assert backend.renamed == {"metric:_step": "tracelet/_step", f"metric:{STEP}": "tracelet/tracelet/step"}
    assert backend.adjustments == {"renamed": 3}


def test_params_are_the_nested_config_and_a_relogged_param_keeps_the_last_value(
    start_wandb: Callable[..., Run], finish_and_read: Finish
) -> None:
    run = start_wandb()
    run.log_params({"optim": {"lr": 0.001, "betas": {"b1": 0.9}}, "epochs": 10, "amp": True, "name": None})
    run.log_params({"optim": {"lr": 0.01}})  # changed
    run.log_params({"epochs": 10})  # the same value: nothing to change
    run.log_params({"_private": 1, "optim.betas": 3})  # reserved by W&B; a value where nested params are
    backend, stored = finish_and_read(run)
    assert stored.config == {
        "optim": {"lr": 0.01, "betas": {"b1": 0.9}},
        "epochs": 10,
        "amp": True,
        "name": None,
        "tracelet/_private": 1,
        "optim.betas": 3,
        "tracelet_tags": stored.config["tracelet_tags"],
    }
    assert backend.adjustments == {"param_changed": 1, "renamed": 1, "param_flat": 1}


def test_tags_are_kept_whole_in_the_config_and_shown_as_labels_when_they_fit(
    start_wandb: Callable[..., Run], finish_and_read: Finish
) -> None:
    run = start_wandb()
    long_value = "v" * 80
    run.set_tags({"team": "vision", "dataset": "imagenet", "long": long_value})
    run.set_tags({"team": "audio"})
    backend, stored = finish_and_read(run)
    tags = stored.config["tracelet_tags"]
    assert {key: tags[key] for key in ("team", "dataset", "long")} == {"team": "audio", "dataset": "imagenet", "long": long_value}
    assert tags["tracelet.run_id"] == run.id
    assert set(tags) == {"team", "dataset", "long", "tracelet.run_id", "tracelet.version", "tracelet.plugins"}
    assert stored.tags == ("team:audio", "dataset:imagenet")
    assert backend.adjustments == {"label_too_long": 1}


def test_histograms_over_w_and_b_bin_limit_are_rebinned_keeping_every_count(tmp_path: Path) -> None:
    backend, _ = _backend(tmp_path)
    bins = 1100
    edges = tuple(float(index) for index in range(bins + 1))
    counts = tuple(float(index % 7) for index in range(bins))
    total = sum(counts)
    backend.tracelet_backend_log_media([Histogram("w", edges, counts, 0.0, 1100.0, 1.0, int(total), 1.0, 4, time.time())])
    backend.tracelet_backend_end(RunStatus.FINISHED)
    assert backend.run_id is not None
    (row,) = read_finished_run(tmp_path / "direct", backend.run_id).history
    histogram = row["w"]
    assert histogram["_type"] == "histogram"
    assert len(histogram["values"]) == math.ceil(bins / 3) <= MAX_HISTOGRAM_BINS
    assert sum(histogram["values"]) == total
    assert (histogram["bins"][0], histogram["bins"][-1]) == (0.0, 1100.0)
    assert histogram["bins"][:3] == [0.0, 3.0, 6.0]
    assert backend.adjustments == {"histogram_rebinned": 1}


def test_rebin_keeps_short_histograms() -> None:
    assert rebin([0.0, 1.0, 2.0], [1.0, 2.0]) == ([0.0, 1.0, 2.0], [1.0, 2.0])
    edges, counts = rebin([float(i) for i in range(1026)], [1.0] * 1025)
    assert (len(counts), sum(counts), edges[-1], edges[1]) == (342, 1025.0, 1025.0, 3.0)


@pytest.mark.parametrize(("status", "code"), [(RunStatus.FINISHED, 0), (RunStatus.FAILED, 1), (RunStatus.KILLED, 143)])
def test_status_is_the_exit_code_of_the_w_and_b_run(
    start_wandb: Callable[..., Run], finish_and_read: Finish, status: RunStatus, code: int
) -> None:
    run = start_wandb()
    run.log_metric("x", 1.0, 0)
    _, stored = finish_and_read(run, status)
    assert stored.exit_codes == [code]


def test_settings_reach_wandb_init(start_wandb: Callable[..., Run], finish_and_read: Finish) -> None:
    run = start_wandb(project="proj", run_name="named", notes="a note", group="g1", job_type="train")
    _, stored = finish_and_read(run)
    assert (stored.project, stored.display_name, stored.notes, stored.group, stored.job_type) == (
        "proj",
        "named",
        "a note",
        "g1",
        "train",
    )


def test_the_run_is_named_after_the_tracelet_run_and_project_by_default(
    start_wandb: Callable[..., Run], finish_and_read: Finish
) -> None:
    run = start_wandb()
    _, stored = finish_and_read(run)
    assert (stored.project, stored.display_name) == ("tests", run.name)


def test_direct_params_hook_with_a_changed_value(tmp_path: Path) -> None:
    backend, _ = _backend(tmp_path)
    backend.tracelet_backend_log_params([Param("a.b", 1), Param("a.b", 2), Param("a", "x")])
    backend.tracelet_backend_set_tags([Tag("k", "v")])
    backend.tracelet_backend_end(RunStatus.FINISHED)
    assert backend.run_id is not None
    stored = read_finished_run(tmp_path / "direct", backend.run_id)
    # "a" is a group of params now: the value "a" is kept apart, flat, under the rename prefix
    assert (stored.config["a"], stored.config["tracelet/a"]) == ({"b": 2}, "x")
    assert "a.b" not in stored.config
    assert backend.adjustments == {"param_changed": 1, "param_flat": 1}


def test_an_offline_resume_numbers_its_rows_after_the_earlier_parts(
    start_wandb: Callable[..., Run], finish_and_read: Finish
) -> None:
    """Offline, W&B cannot ask the server where a resumed run stands and would number rows from 0 again,
    rows W&B ignores when the parts are synced: the backend goes on from the earlier parts' last row."""
    first = start_wandb()
    for step in range(3):
        first.log_metric("m", float(step), step)
    first.log_params({"optim": {"lr": 0.1, "momentum": 0.9}})
    first.set_tags({"team": "vision"})
    backend, _ = finish_and_read(first)
    for part in range(2):
        resumed = start_wandb(run_id=backend.run_id)
        resumed.log_metric("m", 10.0 + part, 1)  # back to an earlier Tracelet step: kept all the same
        resumed.log_metric("m", 20.0 + part, 5 + part)
        resumed.log_params({"optim": {"lr": 0.01 * (part + 1)}})
        again, stored = finish_and_read(resumed)
        assert again.run_id == backend.run_id
    # A config update replaces a top-level key whole: the resumed parts update what the earlier ones left.
    assert stored.config["optim"] == {"lr": 0.02, "momentum": 0.9}
    assert stored.config["tracelet_tags"]["team"] == "vision"
    assert len(stored.directories) == 3
    assert [row["_step"] for row in stored.history] == list(range(7))
    assert _series(stored, "m") == [(0, 0.0), (1, 1.0), (2, 2.0), (1, 10.0), (5, 20.0), (1, 11.0), (6, 21.0)]
    assert stored.exit_codes == [0, 0, 0]


def test_mode_disabled_takes_every_record_and_writes_nothing(start_wandb: Callable[..., Run], wandb_dir: Path) -> None:
    run = start_wandb(mode="disabled")
    run.log_metric("x", 1.0, 0)
    run.log_params({"a": 1})
    run.set_tags({"t": "v"})
    (wandb_dir.parent / "f.txt").write_text("hi")
    run.log_artifact(wandb_dir.parent / "f.txt")
    assert run.stop(timeout=60), run.stats()["wandb"]
    assert run.stats()["wandb"].delivered == 4
    assert list(wandb_dir.iterdir()) == []
