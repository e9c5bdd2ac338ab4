"""The ``lightning`` plugin's hooks: every ``Trainer`` gets a ``TraceletLogger``; ``LightningCLI`` configs are captured.

With a Tracelet run active, ``Trainer.__init__`` (of ``lightning.pytorch``
and of ``pytorch_lightning``) is wrapped so that, once Lightning has set up
the loggers the user asked for, a ``TraceletLogger`` for the run is added
to them, unless the user passed one already. ``logger=False`` included:
starting Tracelet is the request to track.

``LightningCLI`` (the ``cli`` modules, jsonargparse): ``instantiate_classes``
is wrapped to log, before the classes are built, the parsed config of the
subcommand as params, dumped the way ``SaveConfigCallback`` saves it
(``parser.dump(config, skip_none=False)``), so the params are the saved
``config.yaml``'s values, flattened (``trainer.max_epochs``,
``model.init_args.lr``). ``SaveConfigCallback.setup`` is wrapped to upload the
file it wrote, with core's redaction applied, as ``lightning/config.yaml``.

This module imports no Lightning: core calls :meth:`LightningPatcher.tracelet_patch`
with the trainer and cli modules once they are imported.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from tracelet.plugin import PatchSet, Redactor, Run, artifact_dir, capture_errors, hookimpl
from tracelet_lightning.logger import LIGHTNING_PACKAGES, logger_class
from tracelet_lightning.settings import PLUGIN_NAME, LightningSettings

__all__ = ["LightningPatcher"]

_TRAINER_MODULE = ".trainer.trainer"
_CLI_MODULE = ".cli"
CLI_CONFIG_ARTIFACT = "lightning/config.yaml"


class LightningPatcher:
    """Wraps ``Trainer.__init__`` of each Lightning package for one run."""

    def __init__(self, settings: LightningSettings | None = None) -> None:
        self.settings = settings or LightningSettings()
        self._patches = PatchSet()

    @hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        targets = [f"{package}{_TRAINER_MODULE}" for package in LIGHTNING_PACKAGES] if self.settings.auto_attach else []
        if self.settings.capture_cli:
            targets += [f"{package}{_CLI_MODULE}" for package in LIGHTNING_PACKAGES]
        return targets

    @hookimpl
    def tracelet_patch(self, run: Run, module: ModuleType) -> None:
        if module.__name__.endswith(_CLI_MODULE):
            self._patch_cli(run, module)
        else:
            self._patch_trainer(run, module)

    def _patch_trainer(self, run: Run, module: ModuleType) -> None:
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

    def _patch_cli(self, run: Run, module: ModuleType) -> None:
        cli = module.LightningCLI
        instantiate_classes = cli.instantiate_classes

        @functools.wraps(instantiate_classes)
        def instantiate_classes_captured(self: Any, *args: Any, **kwargs: Any) -> Any:
            with capture_errors(PLUGIN_NAME, strict=run.strict):
                _log_cli_config(run, self)
            return instantiate_classes(self, *args, **kwargs)

        self._patches.replace(cli, "instantiate_classes", instantiate_classes_captured)

        save_config_callback = module.SaveConfigCallback
        setup = save_config_callback.setup

        @functools.wraps(setup)
        def setup_captured(self: Any, trainer: Any, *args: Any, **kwargs: Any) -> Any:
            already_saved = self.already_saved
            result = setup(self, trainer, *args, **kwargs)
            if not already_saved and self.save_to_log_dir and trainer.is_global_zero:
                with capture_errors(PLUGIN_NAME, strict=run.strict):
                    _log_cli_file(run, Path(trainer.log_dir) / self.config_filename)
            return result

        self._patches.replace(save_config_callback, "setup", setup_captured)

    @hookimpl
    def tracelet_unpatch(self) -> None:
        self._patches.restore()


def _log_cli_config(run: Run, cli: Any) -> None:
    """Log the subcommand's parsed config as params, as ``SaveConfigCallback`` would save it."""
    import yaml  # jsonargparse's dependency: there whenever LightningCLI is

    subcommand = getattr(cli, "subcommand", None)
    parser = cli._parser(subcommand)
    config = cli.config.get(str(subcommand), cli.config)
    values = yaml.safe_load(parser.dump(config, skip_none=False))
    if isinstance(values, dict):
        run.log_params(values)


def _log_cli_file(run: Run, path: Path) -> None:
    """Upload the ``config.yaml`` Lightning wrote, secrets masked (a copy: core's redaction covers records only)."""
    if not path.is_file():
        return
    copy = artifact_dir(run.info, PLUGIN_NAME) / path.name
    copy.write_text(Redactor(run.settings.redact_patterns).text(path.read_text(encoding="utf-8")), encoding="utf-8")
    run.log_artifact(os.fspath(copy), CLI_CONFIG_ARTIFACT)
