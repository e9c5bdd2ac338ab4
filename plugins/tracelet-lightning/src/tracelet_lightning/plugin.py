"""The ``lightning`` framework plugin: every ``Trainer`` gets a ``TraceletLogger``.

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

import attrs

import tracelet
from tracelet.patching import PatchSet, capture_errors
from tracelet_lightning.logger import LIGHTNING_PACKAGES, logger_class

__all__ = ["LightningPatcher", "LightningSettings", "tracelet_plugin_info"]

PLUGIN_NAME = "lightning"
_TRAINER_MODULE = ".trainer.trainer"


@attrs.frozen
class LightningSettings:
    """Configuration of the ``lightning`` plugin (``TRACELET_LIGHTNING_<FIELD>``)."""

    auto_attach: bool = True
    """Add a ``TraceletLogger`` to every ``Trainer`` created while a run is active."""
    log_checkpoints: bool = True
    """Upload the checkpoints ``ModelCheckpoint`` kept, as artifacts ``checkpoints/<file>``."""


class LightningPatcher:
    """Wraps ``Trainer.__init__`` of each Lightning package for one run."""

    def __init__(self, settings: LightningSettings | None = None) -> None:
        self.settings = settings or LightningSettings()
        self._patches = PatchSet()

    @tracelet.hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return [f"{package}{_TRAINER_MODULE}" for package in LIGHTNING_PACKAGES] if self.settings.auto_attach else []

    @tracelet.hookimpl
    def tracelet_patch(self, run: tracelet.Run, module: ModuleType) -> None:
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

    @tracelet.hookimpl
    def tracelet_unpatch(self) -> None:
        self._patches.restore()


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name=PLUGIN_NAME,
        kind=tracelet.PluginKind.FRAMEWORK,
        factory=LightningPatcher,
        settings=LightningSettings,
        description="Adds a TraceletLogger to every Lightning Trainer (lightning.pytorch, pytorch_lightning)",
    )
