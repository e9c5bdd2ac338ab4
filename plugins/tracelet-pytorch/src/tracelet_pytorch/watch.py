"""``tracelet.watch(model)``: histograms of a model's gradients and parameters, and a summary once.

The clock is the optimizer step, seen through the same global step pre-hook
as optimizer capture: a watched model's clock is the first optimizer that
steps one of its parameters after ``watch()``, and histograms are logged
before that optimizer's steps ``0, every, 2 * every, ...`` (its own count of
``step()`` calls since the run started, the step of the LR series too). At
that moment the gradients are the ones the update is about to use (after
clipping, after ``GradScaler`` unscaled them) and the parameters are those
before the update. Nothing is added to the model: no module hook, no
tensor hook, so there is nothing in it to remove.

Names: ``gradients/<parameter name>`` and ``parameters/<parameter name>``
(the names of ``model.named_parameters()``); the second model watched in a
run gets ``gradients/model2/<parameter name>``, and so on.

On the device: for each tensor, its finite values' minimum, maximum, sum,
sum of squares and count, and ``bins`` equal bins between the minimum and
the maximum (one ``bucketize`` and one scatter-add: numpy's
``np.histogram`` binning, the last bin closed), all in one float64 row; the
rows of all tensors on a device are stacked and copied to the host at once:
one device-to-host copy per device per logging step, never one per tensor.
"""

from __future__ import annotations

import sys
import time
import weakref
from typing import Any

from tracelet.plugin import Histogram, Run, artifact_dir
from tracelet_pytorch.settings import PLUGIN_NAME

__all__ = ["ModelWatcher"]

_STATS = 5  # minimum, maximum, total, sum of squares, count


class _Watched:
    __slots__ = ("clock", "every", "label", "log", "model", "others", "parameters")

    def __init__(self, model: Any, label: str, log: str, every: int) -> None:
        self.model = weakref.ref(model)
        self.label = label
        self.log = log
        self.every = every
        self.clock: int | None = None  # id() of the optimizer whose steps this model's histograms follow
        self.others: set[int] = set()  # ids of optimizers seen stepping none of its parameters
        self.parameters: list[tuple[str, Any]] = list(model.named_parameters())


class ModelWatcher:
    """The models watched in one run; :meth:`on_step` is an optimizer-step listener."""

    def __init__(self, run: Run, bins: int) -> None:
        self._run = run
        self._bins = bins
        self._watched: dict[int, _Watched] = {}  # id(model)
        self._count = 0
        self._fractions: dict[tuple[Any, Any], Any] = {}  # (device, dtype) -> bins + 1 fractions in [0, 1]

    def __bool__(self) -> bool:
        return bool(self._watched)

    def watch(self, model: Any, log: str, every: int) -> None:
        """Watch ``model`` (again: new settings, same names); log its summary the first time."""
        known = self._watched.get(id(model))
        if known is not None and known.model() is model:
            known.log, known.every = log, every
            return
        self._count += 1
        label = "model" if self._count == 1 else f"model{self._count}"
        self._watched[id(model)] = _Watched(model, label, log, every)
        self._summarise(model, label)

    def unwatch(self, model: Any | None) -> bool:
        """Stop watching ``model`` (every model when ``None``); ``True`` if it was watched."""
        if model is None:
            self._watched.clear()
            return True
        known = self._watched.get(id(model))
        if known is None or known.model() is not model:
            return False
        del self._watched[id(model)]
        return True

    def on_step(self, optimizer: Any, step: int) -> None:
        """Before an optimizer step: log the histograms of the models it steps, every ``every`` steps."""
        for watched in self._watched.values():
            if watched.clock is None:
                if id(optimizer) in watched.others:
                    continue
                if not _steps_any(optimizer, watched.parameters):
                    watched.others.add(id(optimizer))
                    continue
                watched.clock = id(optimizer)
            if watched.clock == id(optimizer) and step % watched.every == 0:
                self._log(watched, step)

    # --- what is logged --------------------------------------------------------------------

    def _summarise(self, model: Any, label: str) -> None:
        parameters = list(model.parameters())
        total = sum(parameter.numel() for parameter in parameters)
        trainable = sum(parameter.numel() for parameter in parameters if parameter.requires_grad)
        tensors = [*parameters, *model.buffers()]
        size = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
        self._run.log_params(
            {f"{label}/parameters": total, f"{label}/trainable_parameters": trainable, f"{label}/size_bytes": size}
        )
        path = artifact_dir(self._run.info, PLUGIN_NAME) / f"{label}.txt"
        path.write_text(f"{model}\n", encoding="utf-8")
        self._run.log_artifact(path, f"{label}.txt")

    def _log(self, watched: _Watched, step: int) -> None:
        model = watched.model()
        if model is None:
            return
        prefix = "" if watched.label == "model" else f"{watched.label}/"
        names: list[str] = []
        tensors: list[Any] = []
        for name, parameter in watched.parameters:
            if watched.log != "parameters" and parameter.grad is not None:
                names.append(f"gradients/{prefix}{name}")
                tensors.append(parameter.grad)
            if watched.log != "gradients":
                names.append(f"parameters/{prefix}{name}")
                tensors.append(parameter)
        by_device: dict[Any, list[int]] = {}
        for index, tensor in enumerate(tensors):
            if tensor.numel() > 0 and tensor.is_floating_point() and not tensor.is_sparse and not tensor.is_meta:
                by_device.setdefault(tensor.device, []).append(index)
        now = time.time()
        for indices in by_device.values():
            for index, row in zip(indices, self._host_rows([tensors[i] for i in indices]), strict=True):
                self._run.log_record(self._histogram(names[index], row, step, now))

    def _host_rows(self, tensors: list[Any]) -> list[list[float]]:
        """Each tensor's statistics and bins, computed on its device, brought to the host in one copy."""
        torch = sys.modules["torch"]
        with torch.no_grad():
            rows = torch.stack([self._row(torch, tensor.detach()) for tensor in tensors])
            # copy=True: a real copy on every device, the CPU included, so the one transfer is the same code.
            host: list[list[float]] = rows.to("cpu", copy=True).tolist()
        return host

    def _row(self, torch: Any, tensor: Any) -> Any:
        values = tensor.reshape(-1)
        if values.dtype not in (torch.float32, torch.float64):
            values = values.float()  # half and bfloat16: bin in float32
        finite = torch.isfinite(values)
        count = finite.sum()
        empty = count == 0
        inf = values.new_full((), float("inf"))  # a fill on the device: torch.tensor(inf, device=...) would copy and sync
        minimum = torch.where(empty, 0.0, torch.where(finite, values, inf).amin())
        maximum = torch.where(empty, 0.0, torch.where(finite, values, -inf).amax())
        zeroed = torch.where(finite, values, 0.0)
        total = zeroed.sum(dtype=torch.float64)
        squares = torch.linalg.vector_norm(zeroed, dtype=torch.float64).square()
        # numpy's range: [min, max], widened by 0.5 each side when they are equal (so [-0.5, 0.5] with no value).
        same = minimum == maximum
        edges = torch.lerp(
            torch.where(same, minimum - 0.5, minimum),
            torch.where(same, maximum + 0.5, maximum),
            self._fractions_for(torch, values),
        )
        # Bin i holds [edges[i], edges[i + 1]), the last bin [edges[-2], edges[-1]]: np.histogram's rule.
        bins = torch.bucketize(values, edges[1:-1], right=True)
        bins = torch.where(finite, bins, self._bins)  # non-finite values go to an extra bin, dropped below
        counts = torch.zeros(self._bins + 1, dtype=torch.float64, device=values.device)
        one = torch.ones(1, dtype=torch.float64, device=values.device)
        counts.index_add_(0, bins, one.expand(bins.shape[0]))
        statistics = torch.stack([minimum.double(), maximum.double(), total, squares, count.double()])
        return torch.cat([statistics, edges.double(), counts[: self._bins]])

    def _fractions_for(self, torch: Any, values: Any) -> Any:
        key = (values.device, values.dtype)
        fractions = self._fractions.get(key)
        if fractions is None:
            fractions = self._fractions[key] = torch.linspace(0, 1, self._bins + 1, dtype=values.dtype, device=values.device)
        return fractions

    def _histogram(self, name: str, row: list[float], step: int, now: float) -> Histogram:
        bins = self._bins
        return Histogram(
            name=name,
            edges=tuple(row[_STATS : _STATS + bins + 1]),
            counts=tuple(row[_STATS + bins + 1 :]),
            minimum=row[0],
            maximum=row[1],
            total=row[2],
            count=int(row[4]),
            sum_squares=row[3],
            step=step,
            timestamp=now,
        )


def _steps_any(optimizer: Any, parameters: list[tuple[str, Any]]) -> bool:
    stepped = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    return any(id(parameter) in stepped for _, parameter in parameters)
