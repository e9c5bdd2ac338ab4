"""The ``lightning`` plugin's hooks: every ``Trainer`` gets a ``TraceletLogger``.

With a Tracelet run active, ``Trainer.__init__`` (of ``lightning.pytorch``
and of ``pytorch_lightning``) is wrapped so that, once Lightning has set up
the loggers the user asked for, a ``TraceletLogger`` for the run is added
to them, unless the user passed one already. ``logger=False`` included:
starting Tracelet is the request to track.

This module imports no Lightning: core calls :meth:`LightningPatcher.tracelet_patch`
with the trainer module once it is imported.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from tracelet.plugin import PatchSet, Run, capture_errors, hookimpl
from tracelet_lightning.logger import LIGHTNING_PACKAGES, logger_class
from tracelet_lightning.settings import PLUGIN_NAME, LightningSettings

__all__ = ["LightningPatcher"]

_TRAINER_MODULE = ".trainer.trainer"


class LightningPatcher:
    """Wraps ``Trainer.__init__`` of each Lightning package for one run."""

    def __init__(self, settings: LightningSettings | None = None) -> None:
        self.settings = settings or LightningSettings()
        self._patches = PatchSet()

    @hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return [f"{package}{_TRAINER_MODULE}" for package in LIGHTNING_PACKAGES] if self.settings.auto_attach else []

    @hookimpl
    def tracelet_patch(self, run: Run, module: ModuleType) -> None:
        trainer = module.Trainer
        tracelet_logger = logger_class(module.__name__.removesuffix(_TRAINER_MODULE))
        original = trainer.__init__
        log_checkpoints = self.settings.log_checkpoints

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            with capture_errors(PLUGIN_NAME, strict=run.strict):
                if not any(getattr(logger, "_is_tracelet_logger", False) for logger in self.loggers):
                    attached = tracelet_logger(run, log_checkpoints=log_checkpoints, _automatic=True)
                    self.loggers = [*self.loggers, attached]

        self._patches.replace(trainer, "__init__", __init__)

    @hookimpl
    def tracelet_unpatch(self) -> None:
        self._patches.restore()
