"""Optimizer capture with real torch optimizers and schedulers: params at the first step, the LR curve as metrics."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim import optimizer as optimizer_module

from tracelet.run import Run
from tracelet.testing import RecordingBackend


def recording_of(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def series(backend: RecordingBackend, name: str) -> list[tuple[int, float]]:
    return [(metric.step, metric.value) for metric in backend.metrics if metric.name == name]


def changes(values: list[Any]) -> list[tuple[int, Any]]:
    """``(step, value)`` at the first step and at every step where the value differs from the step before."""
    return [(step, value) for step, value in enumerate(values) if step == 0 or value != values[step - 1]]


def as_param(value: Any) -> Any:
    return json.dumps(list(value)) if isinstance(value, tuple) else value


def expected_params(prefix: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        f"{prefix}/group{index}/{key}": as_param(value)
        for index, group in enumerate(groups)
        for key, value in group.items()
        if key != "params"
    }


def mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def train(optimizer: torch.optim.Optimizer, scheduler: Any, model: torch.nn.Module, steps: int) -> list[list[dict[str, Any]]]:
    """Train and return, for each step, the param groups' hyperparameters the step used (``get_last_lr()`` for lr)."""
    inputs = torch.randn(16, 4)
    used = []
    for _ in range(steps):
        optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        assert scheduler.get_last_lr() == [group["lr"] for group in optimizer.param_groups]
        used.append([{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return used


def test_sgd_with_momentum_and_step_lr_gives_the_scheduler_s_lr_at_every_step(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = mlp()
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.05, "weight_decay": 1e-4}],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    first_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    used = train(optimizer, scheduler, model, steps=10)
    assert run.step == 0  # the optimizer's steps do not move the run's default step
    assert run.stop(timeout=30)
    backend = recording_of(run)

    assert {k: v for k, v in backend.params.items() if k.startswith("optimizer/")} == expected_params(
        "optimizer/SGD", first_groups
    )
    for index in (0, 1):
        lrs = [groups[index]["lr"] for groups in used]
        assert series(backend, f"optimizer/SGD/group{index}/lr") == changes(lrs)
    assert series(backend, "optimizer/SGD/group0/lr") == [(0, 0.1), (3, 0.05), (6, 0.025), (9, 0.0125)]
    # Only what changed is a series: momentum, weight decay and initial_lr stayed as they were.
    assert {m.name for m in backend.metrics} == {"optimizer/SGD/group0/lr", "optimizer/SGD/group1/lr"}


def test_adamw_with_one_cycle_lr_logs_lr_and_the_cycled_beta_at_every_step(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=12)
    first_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    used = train(optimizer, scheduler, model, steps=12)
    assert run.stop(timeout=30)
    backend = recording_of(run)

    params = {k: v for k, v in backend.params.items() if k.startswith("optimizer/")}
    assert params == expected_params("optimizer/AdamW", first_groups)
    assert params["optimizer/AdamW/group0/betas"] == "[0.95, 0.999]"  # OneCycleLR set beta1 to max_momentum
    assert params["optimizer/AdamW/group0/max_lr"] == 0.01
    lrs = [groups[0]["lr"] for groups in used]
    assert len(set(lrs)) == 12
    assert series(backend, "optimizer/AdamW/group0/lr") == changes(lrs) == list(enumerate(lrs))
    beta1 = [groups[0]["betas"][0] for groups in used]
    assert series(backend, "optimizer/AdamW/group0/betas.0") == changes(beta1)
    assert len(changes(beta1)) > 6
    assert {m.name for m in backend.metrics} == {"optimizer/AdamW/group0/lr", "optimizer/AdamW/group0/betas.0"}


def test_a_hyperparameter_first_changed_late_starts_its_series_at_step_0(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    inputs = torch.randn(8, 4)
    for step in range(6):
        if step == 4:
            optimizer.param_groups[0]["momentum"] = 0.9  # a user's own schedule, not a torch scheduler
        optimizer.zero_grad()
        model(inputs).sum().backward()
        optimizer.step()
    assert run.stop(timeout=30)
    backend = recording_of(run)
    assert series(backend, "optimizer/SGD/group0/momentum") == [(0, 0.5), (4, 0.9)]
    assert series(backend, "optimizer/SGD/group0/lr") == [(0, 0.1)]


def test_several_optimizers_and_added_groups_get_their_own_names(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    generator, critic = mlp(), mlp()
    optimizers = [torch.optim.Adam(generator.parameters(), lr=1e-3), torch.optim.Adam(critic.parameters(), lr=4e-3)]
    extra = torch.nn.Parameter(torch.zeros(3))
    inputs = torch.randn(8, 4)
    for step in range(3):
        if step == 1:
            optimizers[0].add_param_group({"params": [extra], "lr": 0.5})
        for model, optimizer in zip((generator, critic), optimizers, strict=True):
            optimizer.zero_grad()
            (model(inputs).sum() + extra.sum()).backward()
            optimizer.step()
    assert run.stop(timeout=30)
    backend = recording_of(run)
    assert series(backend, "optimizer/Adam/group0/lr") == [(0, 1e-3)]
    assert series(backend, "optimizer/Adam-2/group0/lr") == [(0, 4e-3)]
    assert series(backend, "optimizer/Adam/group1/lr") == [(1, 0.5)]  # from the step at which the group appeared
    assert backend.params["optimizer/Adam/group1/lr"] == 0.5
    assert backend.params["optimizer/Adam-2/group0/lr"] == 4e-3
    assert "optimizer/Adam-2/group1/lr" not in backend.params


def test_the_global_hook_is_registered_at_start_and_removed_at_stop(tracelet_start: Callable[..., Run]) -> None:
    pre_hooks = dict(optimizer_module._global_optimizer_pre_hooks)
    post_hooks = dict(optimizer_module._global_optimizer_post_hooks)
    run = tracelet_start(backends=["recording"])
    assert len(optimizer_module._global_optimizer_pre_hooks) == len(pre_hooks) + 1
    assert dict(optimizer_module._global_optimizer_post_hooks) == post_hooks
    assert run.stop(timeout=30)
    assert dict(optimizer_module._global_optimizer_pre_hooks) == pre_hooks
    assert dict(optimizer_module._global_optimizer_post_hooks) == post_hooks
    # Stepping after stop logs nothing and raises nothing.
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    assert not recording_of(run).metrics


def test_the_setting_turns_optimizer_capture_off(tracelet_start: Callable[..., Run]) -> None:
    pre_hooks = dict(optimizer_module._global_optimizer_pre_hooks)
    run = tracelet_start(backends=["recording"], pytorch={"optimizers": False})
    assert dict(optimizer_module._global_optimizer_pre_hooks) == pre_hooks
    model = mlp()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert run.stop(timeout=30)
    assert not [name for name in recording_of(run).params if name.startswith("optimizer/")]


def test_the_user_s_errors_reach_them_unchanged(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = mlp()
    optimizer = torch.optim.LBFGS(model.parameters())
    error = RuntimeError("the closure's own error")

    def closure() -> torch.Tensor:
        raise error

    with pytest.raises(RuntimeError) as raised:
        optimizer.step(closure)
    assert raised.value is error
    assert run.stop(timeout=30)
    assert series(recording_of(run), "optimizer/LBFGS/group0/lr") == [(0, 1)]


class _Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no text for this value")

    __str__ = __repr__


def _step_with_unprintable_hyperparameter() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["custom"] = (_Unprintable(),)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    optimizer.step()


def test_a_value_refused_at_the_door_is_counted_and_the_rest_logged(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], strict=False)
    _step_with_unprintable_hyperparameter()
    assert run.stop(timeout=30)
    assert run.stats().rejected == {"param:optimizer/SGD/group0/custom": 1}
    backend = recording_of(run)
    assert backend.params["optimizer/SGD/group0/lr"] == 0.1
    assert series(backend, "optimizer/SGD/group0/lr") == [(0, 0.1)]


def _train_after_removing_a_key(steps: int) -> list[torch.Tensor]:
    """Train with a custom hyperparameter that the user deletes after the first step: capture code then fails."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["warmup"] = 0.5
    weights = []
    for step in range(steps):
        if step == 1:
            del optimizer.param_groups[0]["warmup"]
        optimizer.zero_grad()
        model(torch.ones(2, 4)).sum().backward()
        optimizer.step()
        weights.append(model[2].bias.detach().clone())
    return weights


def test_a_capture_error_raises_in_strict_mode(tracelet_start: Callable[..., Run]) -> None:
    tracelet_start(backends=["recording"])
    with pytest.raises(KeyError, match="warmup"):
        _train_after_removing_a_key(steps=3)


def test_a_capture_error_is_logged_once_and_training_goes_on(
    tracelet_start: Callable[..., Run], caplog: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(backends=["recording"], strict=False)
    with caplog.at_level(logging.WARNING, logger="tracelet"):
        weights = _train_after_removing_a_key(steps=4)
    assert all(not torch.equal(before, after) for before, after in itertools.pairwise(weights))
    warnings = [record.getMessage() for record in caplog.records if "capture failed" in record.getMessage()]
    assert len(warnings) == 1
    assert "KeyError: 'warmup'" in warnings[0]
    assert run.stop(timeout=30)
    assert series(recording_of(run), "optimizer/SGD/group0/lr") == [(0, 0.1)]


IMPORTED_AFTER_START = """
import json, sys
import tracelet
run = tracelet.start(backends=["recording"])
assert "torch" not in sys.modules
import torch
from torch.optim import optimizer as optimizer_module
hooks = len(optimizer_module._global_optimizer_pre_hooks)
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
for _ in range(4):
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler.step()
assert run.stop(timeout=30)
lr = run.get_plugin("recording").metric_values("optimizer/SGD/group0/lr")
print(json.dumps({"hooks": hooks, "after_stop": len(optimizer_module._global_optimizer_pre_hooks), "lr": lr}))
"""


def test_torch_imported_after_start_is_captured_from_its_import(tmp_path: Path) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    environment |= {"TRACELET_STRICT": "1", "TRACELET_PLUGINS": "recording,pytorch"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER_START],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"hooks": 1, "after_stop": 0, "lr": [[0, 0.5], [2, 0.25]]}
