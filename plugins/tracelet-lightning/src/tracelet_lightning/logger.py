"""``TraceletLogger``: a Lightning ``Logger`` that hands everything to a Tracelet run.

Lightning ships twice, as ``lightning.pytorch`` and as ``pytorch_lightning``,
with separate class hierarchies, so the class is built once per package by
:func:`logger_class`, subclassing that package's ``Logger``.

Everything it does runs on rank zero only (Lightning's ``rank_zero_only``).
Lightning's logger connector has already turned tensors into Python numbers
before ``log_metrics`` is called (its ``convert_tensors_to_scalars``), so
this logger adds no device synchronisation.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import tracelet
from tracelet.plugin import Run, RunStatus

__all__ = ["LIGHTNING_PACKAGES", "logger_class"]

LIGHTNING_PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_FABRIC_OF = {"lightning.pytorch": "lightning.fabric", "pytorch_lightning": "lightning_fabric"}
# Lightning's finalize() statuses. "finished" is SLURM's requeue: the job goes on later.
_FAILED = "failed"

_Function = TypeVar("_Function", bound=Callable[..., Any])


@functools.cache
def logger_class(package: str) -> type:
    """The ``TraceletLogger`` class for ``package`` (``"lightning.pytorch"`` or ``"pytorch_lightning"``)."""
    if package not in _FABRIC_OF:
        raise ValueError(f"unknown Lightning package {package!r}; expected one of {', '.join(LIGHTNING_PACKAGES)}")
    base = importlib.import_module(f"{package}.loggers.logger").Logger
    rank_zero = importlib.import_module(f"{package}.utilities.rank_zero")
    # Typed as keeping the signature of what they wrap: on rank zero they call it; on other
    # ranks they return None (rank_zero_only) or a dummy experiment (rank_zero_experiment).
    rank_zero_only: Callable[[_Function], _Function] = rank_zero.rank_zero_only
    scan_checkpoints = importlib.import_module(f"{package}.loggers.utilities")._scan_checkpoints
    fabric_logger = importlib.import_module(f"{_FABRIC_OF[package]}.utilities.logger")
    fabric_loggers = importlib.import_module(f"{_FABRIC_OF[package]}.loggers.logger")
    rank_zero_experiment: Callable[[_Function], _Function] = fabric_loggers.rank_zero_experiment

    class TraceletLogger(base):  # type: ignore[valid-type, misc]
        """A Lightning logger that logs to a Tracelet run (and so to every configured backend).

        ``TraceletLogger()`` uses the active run, or starts one with
        ``start_options`` (passed to :func:`tracelet.start`) when none is
        active. Metrics keep Lightning's step; the ``epoch`` metric Lightning
        adds is logged like any other. ``save_hyperparameters()`` values
        become params. With ``log_checkpoints``, the checkpoint files a
        ``ModelCheckpoint`` kept are uploaded as artifacts ``checkpoints/<file>``
        when training ends (files it deletes on the way are never uploaded).

        ``finalize("failed")`` stops the run with status FAILED; a successful
        ``fit`` leaves the run open (``trainer.test`` may follow), to be
        ended by :func:`tracelet.stop` or at interpreter exit (FINISHED).
        """

        _is_tracelet_logger = True  # how the automatic attachment recognises one, whatever the package

        def __init__(
            self,
            run: Run | None = None,
            *,
            log_checkpoints: bool = True,
            save_dir: str | os.PathLike[str] | None = None,
            prefix: str = "",
            start_options: Mapping[str, Any] | None = None,
            _automatic: bool = False,
        ) -> None:
            super().__init__()
            self._run = run
            self._log_checkpoints = log_checkpoints
            self._save_dir = None if save_dir is None else os.fspath(save_dir)
            self._prefix = prefix
            self._start_options = dict(start_options or {})
            self._automatic = _automatic
            self._checkpoint_callbacks: list[Any] = []

        # --- identity ---------------------------------------------------------------------

        @property
        @rank_zero_experiment
        def experiment(self) -> Run:
            """The Tracelet run (started now if none is active and none was given)."""
            if self._run is None or self._run is not tracelet.active_run():
                self._run = tracelet.active_run() or tracelet.start(**self._start_options)
            return self._run

        @property
        def name(self) -> str:
            return self._identity("name")

        @property
        def version(self) -> str:
            return self._identity("id")

        def _identity(self, attribute: str) -> str:
            # An attached logger must not move Lightning's default paths (checkpoints go to
            # default_root_dir/<name>/<version>/checkpoints when a logger is first): "" keeps them.
            # Other ranks have no run; rank zero's paths are broadcast to them.
            if self._automatic or rank_zero.rank_zero_only.rank != 0:
                return ""
            return str(getattr(self.experiment, attribute))

        @property
        def save_dir(self) -> str | None:
            return self._save_dir

        @property
        def log_dir(self) -> str | None:
            if self._save_dir is None:
                return None
            return os.path.join(self._save_dir, self.name, self.version)

        # --- logging ---------------------------------------------------------------------

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            run = self.experiment
            prefix = self._prefix
            for name, value in metrics.items():
                run.log_metric(f"{prefix}{name}" if prefix else name, value, step)

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            converted = fabric_logger._sanitize_callable_params(fabric_logger._convert_params(params))
            self.experiment.log_params(converted)

        @rank_zero_only
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            # Upload at the end, not now: ModelCheckpoint deletes files it no longer keeps, and
            # a backend reads an artifact's file later, on its own thread.
            if self._log_checkpoints and checkpoint_callback not in self._checkpoint_callbacks:
                self._checkpoint_callbacks.append(checkpoint_callback)

        @rank_zero_only
        def finalize(self, status: str) -> None:
            run = self._run
            if run is None or run is not tracelet.active_run():
                return  # never used, or its run already ended
            for callback in self._checkpoint_callbacks:
                for _, path, _, _ in scan_checkpoints(callback, {}):
                    run.log_artifact(path, f"checkpoints/{os.path.basename(path)}")
            self._checkpoint_callbacks.clear()
            if status == _FAILED:
                run.stop(RunStatus.FAILED)

        def __repr__(self) -> str:
            return f"<TraceletLogger run={self._run!r} package={package}>"

    TraceletLogger.__module__ = __name__
    TraceletLogger.__qualname__ = "TraceletLogger"
    return TraceletLogger
