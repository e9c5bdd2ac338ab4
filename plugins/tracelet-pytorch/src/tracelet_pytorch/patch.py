"""The ``pytorch`` plugin's hooks: TensorBoard capture, optimizer capture and ``tracelet.watch``.

Core calls :meth:`PyTorchPatcher.tracelet_patch` for each target module once
it is imported (at ``start()`` if it already is): the TensorBoard writer
modules (see :mod:`tracelet_pytorch.tensorboard`) and
``torch.optim.optimizer``, where the global optimizer step hook is
registered (see :mod:`tracelet_pytorch.optim`). ``tracelet.watch(model)``
reaches :meth:`PyTorchPatcher.tracelet_watch` (see
:mod:`tracelet_pytorch.watch`). This module imports no torch: what it needs
comes in the modules core hands it, or from ``sys.modules`` once the user
has a model.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from tracelet.plugin import Run, capture_errors, hookimpl
from tracelet_pytorch.optim import OptimizerCapture
from tracelet_pytorch.settings import PLUGIN_NAME, PyTorchSettings
from tracelet_pytorch.tensorboard import TARGETS as TENSORBOARD_TARGETS
from tracelet_pytorch.tensorboard import TensorBoardCapture
from tracelet_pytorch.watch import ModelWatcher

__all__ = ["OPTIMIZER_MODULE", "PyTorchPatcher"]

OPTIMIZER_MODULE = "torch.optim.optimizer"
"""Where torch keeps its global optimizer hooks (imported by ``import torch``)."""


class PyTorchPatcher:
    """The plugin's per-run object: what it patched and watches, undone at stop."""

    def __init__(self, settings: PyTorchSettings | None = None) -> None:
        self.settings = settings or PyTorchSettings()
        self._tensorboard = TensorBoardCapture(self.settings)
        self._optimizer_module: ModuleType | None = None
        self._optimizers: OptimizerCapture | None = None
        self._watcher: ModelWatcher | None = None

    @hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return [*TENSORBOARD_TARGETS, OPTIMIZER_MODULE]

    @hookimpl
    def tracelet_patch(self, run: Run, module: ModuleType) -> None:
        if module.__name__ != OPTIMIZER_MODULE:
            self._tensorboard.patch(run, module)
            return
        self._optimizer_module = module
        if self.settings.optimizers:
            self._step_hook(run)

    @hookimpl
    def tracelet_unpatch(self) -> None:
        self._tensorboard.unpatch()
        if self._optimizers is not None:
            self._optimizers.remove()
            self._optimizers = None
        if self._watcher is not None:
            self._watcher.unwatch(None)

    @hookimpl
    def tracelet_watch(self, run: Run, model: object, log: str, every: int) -> bool | None:
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(model, torch.nn.Module):
            return None
        with capture_errors(PLUGIN_NAME, strict=run.strict):
            if self._watcher is None:
                self._watcher = ModelWatcher(run, self.settings.watch_bins)
            self._watcher.watch(model, log, every)
            steps = self._step_hook(run)
            if self._watcher.on_step not in steps.listeners:
                steps.listeners.append(self._watcher.on_step)
        return True

    @hookimpl
    def tracelet_unwatch(self, run: Run, model: object | None) -> bool | None:
        watcher = self._watcher
        if watcher is None:
            return None
        unwatched = watcher.unwatch(model)
        if not watcher and self._optimizers is not None and watcher.on_step in self._optimizers.listeners:
            self._optimizers.listeners.remove(watcher.on_step)
            if not self.settings.optimizers:  # the hook was there for watch() only
                self._optimizers.remove()
                self._optimizers = None
        return unwatched

    def _step_hook(self, run: Run) -> OptimizerCapture:
        """The run's global optimizer step hook, registered on first need."""
        if self._optimizers is None:
            module: Any = self._optimizer_module or sys.modules[OPTIMIZER_MODULE]
            self._optimizers = OptimizerCapture(run, module, hyperparameters=self.settings.optimizers)
        return self._optimizers
