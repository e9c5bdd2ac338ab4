"""Optimizer capture: hyperparameters as params, and the learning-rate curve as metrics, without a callback.

One global step pre-hook (``torch.optim.optimizer.register_optimizer_step_pre_hook``)
sees every ``optimizer.step()`` of every optimizer class, built-in or not;
no class is patched. For each optimizer, at its first step:

- every hyperparameter of every param group (each entry of
  ``param_groups[k]`` except ``params``: ``lr``, ``betas``, ``momentum``,
  ``weight_decay``, ``eps``, the flags, what a scheduler added such as
  ``initial_lr``) becomes the param ``optimizer/<Class>/group<k>/<key>``;
- ``lr`` starts the metric series ``optimizer/<Class>/group<k>/lr``.

At every later step, each numeric hyperparameter (int, float, tuple of
numbers) is compared with its value at the previous step; a changed one is
logged at this step. A series other than ``lr`` starts at its first change:
its first value is then logged at step 0 as well, so the curve starts where
the optimizer did. A tuple's elements are series of their own
(``betas.0``, ``betas.1``), each logged when it changes.

The step of these metrics is the optimizer's own count of ``step()`` calls
before this one (0 for the first step), so the value at step ``n`` is the
one the ``n``-th update used. The second optimizer of a class to step is
``optimizer/<Class>-2``, the third ``-3``, in order of their first step.
Hyperparameters held in tensors (``lr=torch.tensor(...)`` for capturable
or fused optimizers) are logged as params only, read once, since comparing
them at each step would synchronise a GPU.

Cost per ``step()``: a dict lookup and one comparison of floats per numeric
hyperparameter; nothing is allocated unless a value changed.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from tracelet.plugin import Metric, Run, capture_errors
from tracelet_pytorch.settings import PLUGIN_NAME

__all__ = ["OptimizerCapture", "StepListener"]

StepListener = Callable[[Any, int], None]
"""Called with ``(optimizer, step)`` before each optimizer step (``watch`` uses it as its clock)."""

_now = time.time


class _Series:
    """One numeric hyperparameter of one param group, compared at each step."""

    __slots__ = ("element_names", "group", "key", "last", "name", "started")

    def __init__(self, group: dict[str, Any], key: str, name: str, started: bool) -> None:
        self.group = group
        self.key = key
        self.last = group[key]
        self.name = name
        # Logged already (lr from the first step, the others from their first change); per element for a tuple.
        self.started: bool | list[bool] = [started] * len(self.last) if type(self.last) is tuple else started
        self.element_names = tuple(f"{name}.{index}" for index in range(len(self.last))) if type(self.last) is tuple else ()


class _OptimizerState:
    __slots__ = ("groups", "optimizer", "prefix", "series", "step")

    def __init__(self, optimizer: Any, prefix: str) -> None:
        self.optimizer = weakref.ref(optimizer)
        self.prefix = prefix
        self.step = 0
        self.groups = 0
        self.series: list[_Series] = []

    def belongs_to(self, optimizer: object) -> bool:
        """Whether this is ``optimizer``'s state (an id can be reused once an optimizer is gone)."""
        return self.optimizer() is optimizer


class OptimizerCapture:
    """Registers the global step pre-hook for a run; :meth:`remove` takes it away."""

    def __init__(self, run: Run, optimizer_module: ModuleType, *, hyperparameters: bool) -> None:
        self._run = run
        self._hyperparameters = hyperparameters
        self._states: dict[int, _OptimizerState] = {}  # id(optimizer): ids, not weak keys, keep the hook allocation-free
        self._per_class: dict[str, int] = {}
        self.listeners: list[StepListener] = []
        self._handle = optimizer_module.register_optimizer_step_pre_hook(self._before_step)

    def remove(self) -> None:
        """Remove the hook from torch's global hooks and forget every optimizer."""
        self._handle.remove()
        self._states.clear()
        self.listeners.clear()

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        try:
            state = self._states.get(id(optimizer))
            if state is None or not state.belongs_to(optimizer):
                state = self._first_step(optimizer)
                step = 0
            else:
                step = state.step
                state.step = step + 1  # first, so that a failure below leaves the count right
                if self._hyperparameters:
                    if len(optimizer.param_groups) != state.groups:
                        self._new_groups(optimizer, state, step)
                    for series in state.series:
                        value = series.group[series.key]
                        if value != series.last:
                            self._changed(series, value, step)
            for listener in self.listeners:
                listener(optimizer, step)
        except Exception as error:
            with capture_errors(PLUGIN_NAME, strict=self._run.strict):
                raise error

    def _first_step(self, optimizer: Any) -> _OptimizerState:
        name = type(optimizer).__name__
        count = self._per_class[name] = self._per_class.get(name, 0) + 1
        state = _OptimizerState(optimizer, f"optimizer/{name}" if count == 1 else f"optimizer/{name}-{count}")
        self._states[id(optimizer)] = state
        state.step = 1
        if self._hyperparameters:
            self._new_groups(optimizer, state, 0)
        return state

    def _new_groups(self, optimizer: Any, state: _OptimizerState, step: int) -> None:
        """Log the params of the groups added since the last look, and start comparing their numbers."""
        groups = optimizer.param_groups
        params: dict[str, Any] = {}
        now = _now()
        for index in range(state.groups, len(groups)):
            group = groups[index]
            prefix = f"{state.prefix}/group{index}"
            for key, value in group.items():
                if key == "params":
                    continue
                if _is_number(value) or _is_numbers(value):
                    series = _Series(group, key, f"{prefix}/{key}", started=key == "lr")
                    state.series.append(series)
                    if key == "lr":
                        self._log(series.name, value, step, now)
                elif _is_tensor(value):
                    value = value.item() if value.numel() == 1 else None  # once, at the first step
                elif not (value is None or isinstance(value, str | bool | tuple)):
                    continue  # lists of names, objects: not a hyperparameter
                params[f"{prefix}/{key}"] = value
        state.groups = len(groups)
        self._run.log_params(params)

    def _changed(self, series: _Series, value: Any, step: int) -> None:
        now = _now()
        last, started = series.last, series.started
        if type(started) is list:
            if type(value) is not tuple or len(value) != len(started):  # a tuple replaced by something else
                series.started, series.last = True, value
                self._log(series.name, value, step, now)
                return
            for index, (new, old) in enumerate(zip(value, last, strict=True)):
                if new != old:
                    if not started[index]:
                        self._log(series.element_names[index], old, 0, now)
                        started[index] = True
                    self._log(series.element_names[index], new, step, now)
        else:
            if not started:
                self._log(series.name, last, 0, now)
            self._log(series.name, value, step, now)
            series.started = True
        series.last = value

    def _log(self, name: str, value: Any, step: int, now: float) -> None:
        # log_record, not log_metric: these steps are the optimizer's and must not move run.step.
        if type(value) is tuple:
            for index, item in enumerate(value):
                self._run.log_record(Metric(f"{name}.{index}", float(item), step, now))
        else:
            self._run.log_record(Metric(name, float(value), step, now))


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int


def _is_numbers(value: object) -> bool:
    return type(value) is tuple and len(value) > 0 and all(_is_number(item) for item in value)


def _is_tensor(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "numel") and hasattr(value, "item")
