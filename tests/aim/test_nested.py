"""Child runs (``run.child()``) in AIM: the parent's experiment, the parent named in the run, read back through aim.Repo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aim

from tracelet.run import Run
from tracelet_aim import AimBackend

Start = Callable[..., Run]


def test_a_child_run_names_its_parent_in_the_parents_experiment(tracelet_start: Start, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = {"aim": {"repo": str(repo), "run_name": "parent display name"}}
    parent = tracelet_start(project="cv", name="sweep", backends=["aim"], config=config)
    child = parent.child(name="fold-1")
    child.log_metric("acc", 0.75, step=3)
    assert parent.stop(timeout=60), (parent.stats()["aim"], child.stats()["aim"])  # stops the open child first

    hashes = {}
    for run in (parent, child):
        backend = run.get_plugin("aim")
        assert isinstance(backend, AimBackend) and backend.run_hash is not None
        hashes[run.name] = backend.run_hash
    stored = aim.Repo.from_path(str(repo))
    fold, sweep = stored.get_run(hashes["fold-1"]), stored.get_run(hashes["sweep"])
    assert fold is not None and sweep is not None
    assert (fold.name, fold.experiment, sweep.name, sweep.experiment) == ("fold-1", "cv", "parent display name", "cv")
    assert fold["tracelet"]["parent_run_id"] == parent.id
    assert fold["tracelet"]["parent_hash"] == hashes["sweep"]
    assert fold["tags"]["tracelet.parent_run_id"] == parent.id
    assert "parent_run_id" not in sweep["tracelet"]
    series = {}
    for name, context, _ in fold.iter_sequence_info_by_type(("float", "int")):
        steps, (values, _, _) = fold.get_metric(name, context).data.items_list()
        series[(name, json.dumps(context.to_dict()))] = list(zip(steps, values, strict=True))
    assert series == {("acc", "{}"): [(3, 0.75)]}
