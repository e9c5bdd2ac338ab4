"""What ClearML stores for each record, read from the offline session as ClearML wrote it (real clearml offline)."""

from __future__ import annotations

import json
from collections.abc import Callable

from clearml_reader import read_session
from hypothesis import given
from hypothesis import strategies as st

from tracelet.plugin import Histogram, Text
from tracelet.run import Run
from tracelet_clearml import ClearmlBackend
from tracelet_clearml.backend import metric_name, title_series


@given(st.text(alphabet=st.sampled_from("ab/é_"), max_size=12))
def test_title_series_is_reversed_exactly(name: str) -> None:
    title, series = title_series(name)
    assert metric_name(title, series) == name


def test_title_series_mapping_users_see() -> None:
    assert title_series("train/loss") == ("train", "loss")
    assert title_series("val/acc/top1") == ("val", "acc/top1")
    assert title_series("loss") == ("loss", "loss")
    assert title_series("x/x") == ("x/x", "x/x")


def _finish(run: Run) -> ClearmlBackend:
    backend = run.get_plugin("clearml")
    assert isinstance(backend, ClearmlBackend)
    assert run.stop(timeout=60), run.stats()["clearml"]
    assert backend.task_id is not None
    return backend


def test_every_point_as_title_series_at_its_step(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"offline": True}})
    steps = [*range(2000), 5, 3, 3, 0]
    for index, step in enumerate(steps):
        run.log_metric("train/loss", index * 0.25, step=step)
    run.log_metric("lr", 0.1, step=7)
    backend = _finish(run)
    scalars = read_session(backend.task_id or "").events_of("training_stats_scalar")
    loss = [(e["iter"], e["value"]) for e in scalars if (e["metric"], e["variant"]) == ("train", "loss")]
    assert loss == [(step, index * 0.25) for index, step in enumerate(steps)]
    assert [(e["metric"], e["variant"], e["iter"], e["value"]) for e in scalars if e["metric"] == "lr"] == [("lr", "lr", 7, 0.1)]


def test_params_tags_labels_status_texts_histograms(tracelet_start: Callable[..., Run]) -> None:
    settings = {"offline": True, "tags": "a, b", "project": "vision", "task_name": "baseline", "task_type": "testing"}
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": settings})
    run.log_params({"optim": {"lr": 0.001}, "epochs": 10, "lr": 0.1})
    run.log_params({"lr": 0.2})
    run.set_tags({"team": "vision", "baseline": ""})
    run.log_record(Text("notes/run", "Ünïcødé\nline", 4, 1.0))
    run.log_record(Histogram("weights", (0.0, 0.5, 1.0), (2.0, 3.0), 0.1, 0.9, 2.0, 5, 1.0, 2, 1.0))
    backend = _finish(run)
    session = read_session(backend.task_id or "")
    assert (session.task["project_name"], session.task["name"], session.task["type"]) == ("vision", "baseline", "testing")
    assert session.hyperparams["General"] == {"optim.lr": "0.001", "epochs": "10", "lr": "0.2"}
    properties = session.properties
    assert {key: properties[key] for key in ("team", "baseline", "tracelet.status")} == {
        "team": "vision",
        "baseline": "",
        "tracelet.status": "FINISHED",
    }
    assert properties["tracelet.run_id"] == run.id
    assert set(session.task["tags"]) == {"a", "b", "baseline"}
    (text,) = session.events_of("training_debug_image")
    assert (text["metric"], text["variant"], text["iter"]) == ("notes", "run", 4)
    assert text["url"].endswith(".txt")
    with open(text["url"], encoding="utf-8") as file:
        assert file.read() == "Ünïcødé\nline"
    (plot,) = session.events_of("plot")
    figure = json.loads(plot["plot_str"])
    assert (plot["metric"], plot["variant"], plot["iter"]) == ("weights", "weights", 2)
    assert figure["data"][0]["y"] == [2.0, 3.0]
    assert figure["data"][0]["x"] == ["0.0", "0.5"]
    assert figure["layout"]["tracelet"]["edges"] == [0.0, 0.5, 1.0]
