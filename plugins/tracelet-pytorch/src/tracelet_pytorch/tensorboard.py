"""TensorBoard capture: ``SummaryWriter`` calls reach every Tracelet backend.

We patch the event layer, ``FileWriter.add_event``, which every data-writing
``SummaryWriter`` method ends in (``add_scalars``' child writers and
``add_hparams``' child writer included), so each event is captured exactly
once whatever subclass or how many writers wrote it. Three public methods
are wrapped as well, only to say what their events mean: ``add_scalars``
(record names ``main_tag/tag``), ``add_figure`` (figures, not images) and
``add_hparams`` (its params, taken from the call). ``SummaryWriter.close``
is wrapped to upload the log directory, which keeps what has no record form.

This module imports neither torch nor TensorBoard: the plugin's patcher
calls :meth:`TensorBoardCapture.patch` with the writer module core hands it.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from types import FrameType, ModuleType
from typing import Any

from tracelet.plugin import Metric, PatchSet, Run, capture_errors
from tracelet_pytorch.events import summary_records
from tracelet_pytorch.settings import PLUGIN_NAME, PyTorchSettings

__all__ = ["TARGETS", "TensorBoardCapture"]

TARGETS = ("torch.utils.tensorboard.writer", "tensorboardX.writer")
# Writers created inside these modules belong to Lightning's TensorBoardLogger; when the
# Lightning plugin is in the run, its TraceletLogger already captures those values.
_LIGHTNING_LOGGER_MODULES = ("lightning.pytorch.loggers", "pytorch_lightning.loggers", "lightning.fabric.loggers")
_STACK_DEPTH = 30


class _CallContext(threading.local):
    """What the public method being run on this thread says about the events it writes."""

    def __init__(self) -> None:
        self.scalars_tag: str | None = None
        self.scalars_keys: Iterator[str] | None = None
        self.figures = False


class TensorBoardCapture:
    """Patches ``torch.utils.tensorboard`` and ``tensorboardX`` for one run."""

    def __init__(self, settings: PyTorchSettings) -> None:
        self.settings = settings
        self._patches = PatchSet()
        self._context = _CallContext()
        # FileWriter -> whether its events are captured, decided once per writer.
        self._captured: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()
        self._logdirs: set[str] = set()
        self._uploaded: set[str] = set()

    def patch(self, run: Run, module: ModuleType) -> None:
        """Patch a writer module (one of :data:`TARGETS`)."""
        self._patch_file_writer(run, module.FileWriter)
        writer = module.SummaryWriter
        self._patch_add_scalars(run, writer)
        self._patch_add_figure(writer)
        self._patch_add_hparams(run, writer)
        self._patch_close(run, writer)

    def unpatch(self) -> None:
        self._patches.restore()

    # --- the event layer ------------------------------------------------------------------

    def _patch_file_writer(self, run: Run, file_writer: type) -> None:
        original = file_writer.add_event  # type: ignore[attr-defined]
        context = self._context
        captured = self._captured
        log_metric = run.log_metric
        log_record = run.log_record
        lightning_in_run = "lightning" in run.info.plugins

        @functools.wraps(original)
        def add_event(writer: Any, event: Any, step: Any = None, walltime: Any = None) -> None:
            original(writer, event, step, walltime)
            try:
                capture = captured.get(writer)
                if capture is None:
                    capture = captured[writer] = self._first_sight(writer, lightning_in_run)
                if capture:
                    figures = context.figures
                    name_for = self._scalars_name if context.scalars_keys is not None else _same
                    for record in summary_records(event, name_for, figures):
                        if type(record) is Metric:
                            log_metric(record.name, record.value, record.step, record.timestamp)
                        else:
                            log_record(record)
            except Exception as error:  # noqa: BLE001 - capture must never break training
                _report(error, run.strict)

        self._patches.replace(file_writer, "add_event", add_event)

    def _first_sight(self, writer: Any, lightning_in_run: bool) -> bool:
        """Decide once per FileWriter whether to capture it, and remember its directory."""
        self._logdirs.add(_logdir_of(writer))
        return not (lightning_in_run and _called_from(_LIGHTNING_LOGGER_MODULES))

    def _scalars_name(self, tag: str) -> str:
        context = self._context
        if tag != context.scalars_tag or context.scalars_keys is None:
            return tag
        return f"{tag}/{next(context.scalars_keys, '')}".rstrip("/")

    # --- public methods that give events their meaning ---------------------------------------

    def _patch_add_scalars(self, run: Run, summary_writer: type) -> None:
        original = summary_writer.add_scalars  # type: ignore[attr-defined]
        context = self._context

        @functools.wraps(original)
        def add_scalars(writer: Any, main_tag: str, tag_scalar_dict: Any, *args: Any, **kwargs: Any) -> Any:
            # Both libraries write one child event per key, in the dict's order.
            outer = (context.scalars_tag, context.scalars_keys)
            try:
                context.scalars_tag, context.scalars_keys = main_tag, iter(list(tag_scalar_dict))
            except Exception as error:  # noqa: BLE001 - capture must never break training
                _report(error, run.strict)
            try:
                return original(writer, main_tag, tag_scalar_dict, *args, **kwargs)
            finally:
                context.scalars_tag, context.scalars_keys = outer

        self._patches.replace(summary_writer, "add_scalars", add_scalars)

    def _patch_add_figure(self, summary_writer: type) -> None:
        original = summary_writer.add_figure  # type: ignore[attr-defined]
        context = self._context

        @functools.wraps(original)
        def add_figure(writer: Any, *args: Any, **kwargs: Any) -> Any:
            outer = context.figures
            context.figures = True
            try:
                return original(writer, *args, **kwargs)
            finally:
                context.figures = outer

        self._patches.replace(summary_writer, "add_figure", add_figure)

    def _patch_add_hparams(self, run: Run, summary_writer: type) -> None:
        original = summary_writer.add_hparams  # type: ignore[attr-defined]

        @functools.wraps(original)
        def add_hparams(writer: Any, hparam_dict: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(writer, hparam_dict, *args, **kwargs)
            # Its metrics are ordinary scalar events of a child writer, captured below it.
            try:
                file_writer = getattr(writer, "file_writer", None)
                if file_writer is None or self._captured.get(file_writer, True):
                    run.log_params(hparam_dict)
            except Exception as error:  # noqa: BLE001 - capture must never break training
                _report(error, run.strict)
            return result

        self._patches.replace(summary_writer, "add_hparams", add_hparams)

    def _patch_close(self, run: Run, summary_writer: type) -> None:
        original = summary_writer.close  # type: ignore[attr-defined]

        @functools.wraps(original)
        def close(writer: Any) -> Any:
            result = original(writer)
            try:
                if self.settings.upload_logdir:
                    self._upload(run, _logdir_of(writer))
            except Exception as error:  # noqa: BLE001 - capture must never break training
                _report(error, run.strict)
            return result

        self._patches.replace(summary_writer, "close", close)

    def _upload(self, run: Run, logdir: str) -> None:
        # add_hparams' child writer closes inside its parent's directory: the parent uploads it.
        inside_another = any(logdir.startswith(other + os.sep) for other in self._logdirs)
        if logdir in self._uploaded or inside_another or logdir not in self._logdirs or not os.path.isdir(logdir):
            return
        self._uploaded.add(logdir)
        run.log_artifact(logdir, f"tensorboard/{os.path.basename(logdir)}")


def _logdir_of(writer: Any) -> str:
    """A FileWriter's or SummaryWriter's directory (tensorboardX's SummaryWriter has no get_logdir)."""
    logdir = writer.logdir if hasattr(writer, "logdir") else writer.get_logdir()
    return os.path.abspath(str(logdir))


def _same(tag: str) -> str:
    return tag


def _called_from(module_prefixes: tuple[str, ...]) -> bool:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_STACK_DEPTH):
        if frame is None:
            return False
        if str(frame.f_globals.get("__name__", "")).startswith(module_prefixes):
            return True
        frame = frame.f_back
    return False


def _report(error: Exception, strict: bool) -> None:
    """Log an error of Tracelet's capture code once (raise it in strict mode); the training goes on."""
    with capture_errors(PLUGIN_NAME, strict=strict):
        raise error
