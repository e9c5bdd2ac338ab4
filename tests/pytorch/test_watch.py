"""``tracelet.watch(model)`` with real torch: numpy's histograms, one host copy per logging step, every hook removed."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import optimizer as optimizer_module
from torch.utils._python_dispatch import TorchDispatchMode

import tracelet
from tracelet.errors import TraceletError
from tracelet.records import Artifact, Histogram
from tracelet.run import Run
from tracelet.testing import RecordingBackend

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]


class CopiesToHost(TorchDispatchMode):
    """Counts the operators torch runs, and the copies to the host.

    A copy to the host is an ``aten._to_copy`` asked to put its result on the
    CPU (``device=cpu``: ``.cpu()``, ``.to("cpu")``; on a CPU tensor only a
    ``copy=True`` copy is dispatched at all) or whose input is elsewhere, or a
    ``copy_`` into a CPU tensor from another device. Dtype conversions on a
    device (``.double()``) are not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.operators: Counter[str] = Counter()
        self.to_host = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        self.operators[name] += 1
        if name in ("_to_copy", "copy_") and isinstance(result, torch.Tensor) and result.device.type == "cpu":
            source = args[1] if name == "copy_" else args[0]
            asked = name == "_to_copy" and kwargs.get("device") == torch.device("cpu")
            if asked or source.device.type != "cpu":
                self.to_host += 1
        return result


def recording_of(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def cnn(device: str = "cpu") -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 3),
    ).to(device)


def batches(steps: int, device: str = "cpu") -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(5, 1, 8, 8, generator=generator).to(device) for _ in range(steps)]


def train(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, device: str = "cpu"
) -> list[dict[str, torch.Tensor]]:
    """Train; return, for each step, copies of the gradients and parameters the step saw (before the update)."""
    return train_on(model, optimizer, batches(steps, device))


def train_on(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    seen = []
    for inputs in data:
        optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        snapshot = {}
        for name, parameter in model.named_parameters():
            snapshot[f"parameters/{name}"] = parameter.detach().clone()
            if parameter.grad is not None:
                snapshot[f"gradients/{name}"] = parameter.grad.detach().clone()
        seen.append(snapshot)
        optimizer.step()
    return seen


def assert_numpy_histogram(histogram: Histogram, tensor: torch.Tensor) -> None:
    values = tensor.detach().cpu().double().numpy().ravel()
    assert len(histogram.edges) == 65
    counts, _ = np.histogram(values, bins=np.array(histogram.edges))
    assert histogram.counts == tuple(float(count) for count in counts)
    assert histogram.count == values.size == sum(histogram.counts)
    assert histogram.minimum == values.min()
    assert histogram.maximum == values.max()
    widened = 0.5 if values.min() == values.max() else 0.0  # numpy widens an empty range by 0.5 each side
    assert (histogram.edges[0], histogram.edges[-1]) == (values.min() - widened, values.max() + widened)
    assert math.isclose(histogram.total, float(values.sum()), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(histogram.sum_squares, float(np.dot(values, values)), rel_tol=1e-9)
    # The edges are numpy's for the same range (in the tensor's precision).
    numpy_edges = np.histogram_bin_edges(values, bins=64)
    assert np.allclose(histogram.edges, numpy_edges, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_histograms_equal_numpy_s_with_one_host_copy_per_logging_step(tracelet_start: Callable[..., Run], device: str) -> None:
    run = tracelet_start(backends=["recording"])
    model = cnn(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tracelet.watch(model, log="all", every=3)
    data = batches(8, device)
    with warnings.catch_warnings(record=True) as caught, CopiesToHost() as copies:
        warnings.simplefilter("always")
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")  # a warning for each operation that waits for the GPU
        try:
            seen = train_on(model, optimizer, data)
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    assert run.stop(timeout=30)

    histograms = recording_of(run).of_type(Histogram)
    parameter_names = [name for name, _ in model.named_parameters()]
    expected_names = [f"{kind}/{name}" for name in parameter_names for kind in ("gradients", "parameters")]
    assert [(h.step, h.name) for h in histograms] == [(step, name) for step in (0, 3, 6) for name in expected_names]
    for histogram in histograms:
        assert isinstance(histogram, Histogram)
        assert_numpy_histogram(histogram, seen[histogram.step][histogram.name])
    # One device-to-host copy per logging step (3), whatever the number of tensors (8 per step); one
    # bucketize (the binning kernel) per tensor per logging step; no .item().
    assert copies.to_host == 3
    assert copies.operators["bucketize"] == 3 * len(expected_names)
    assert copies.operators["_local_scalar_dense"] == 0
    if device == "cuda":  # the training loop itself does not synchronise: each logging step adds one wait, its copy
        assert len([w for w in caught if "synchroniz" in str(w.message)]) == 3


def test_gradients_only_by_default_and_bins_from_the_settings(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], pytorch={"watch_bins": 8})
    model = cnn()
    optimizer = torch.optim.Adam(model.parameters())
    run.watch(model, every=2)
    seen = train(model, optimizer, steps=3)
    assert run.stop(timeout=30)
    histograms = recording_of(run).of_type(Histogram)
    assert {h.name.split("/")[0] for h in histograms} == {"gradients"}
    assert [h.step for h in histograms] == [0] * 6 + [2] * 6
    for histogram in histograms:
        assert isinstance(histogram, Histogram)
        assert len(histogram.counts) == 8
        values = seen[histogram.step][histogram.name].numpy().ravel()
        assert histogram.counts == tuple(float(c) for c in np.histogram(values, bins=np.array(histogram.edges))[0])


def test_constant_and_non_finite_values_are_binned_like_numpy(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.bias.zero_()
        model.weight.copy_(torch.tensor([[1.0, float("nan"), -2.0, float("inf")], [0.5, 0.5, 0.25, 3.0]]))
    tracelet.watch(model, log="parameters", every=1)
    torch.optim.SGD(model.parameters(), lr=0.0).step()
    assert run.stop(timeout=30)
    by_name = {h.name: h for h in recording_of(run).of_type(Histogram) if isinstance(h, Histogram)}
    bias = by_name["parameters/bias"]
    assert (bias.edges[0], bias.edges[-1], bias.minimum, bias.maximum, bias.count) == (-0.5, 0.5, 0.0, 0.0, 2)
    assert bias.counts == tuple(float(c) for c in np.histogram(np.zeros(2), bins=64)[0])
    weight = by_name["parameters/weight"]
    finite = np.array([1.0, -2.0, 0.5, 0.5, 0.25, 3.0])
    assert (weight.count, weight.minimum, weight.maximum, weight.total) == (6, -2.0, 3.0, float(finite.sum()))
    assert weight.counts == tuple(float(c) for c in np.histogram(finite, bins=np.array(weight.edges))[0])


def test_the_model_summary_is_logged_once(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    model = cnn()
    model[0].weight.requires_grad_(False)
    tracelet.watch(model)
    tracelet.watch(model, log="all", every=5)  # watching again changes the settings, logs no second summary
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=1)
    assert run.stop(timeout=30)
    backend = recording_of(run)
    total = sum(p.numel() for p in model.parameters())
    frozen = model[0].weight.numel()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert {k: v for k, v in backend.params.items() if k.startswith("model/")} == {
        "model/parameters": total,
        "model/trainable_parameters": total - frozen,
        "model/size_bytes": total * 4 + buffers,
    }
    artifacts = [a for a in backend.records if isinstance(a, Artifact)]
    assert [a.name for a in artifacts] == ["model.txt"]
    assert Path(artifacts[0].path).read_text(encoding="utf-8") == f"{model}\n"
    assert len([h for h in backend.of_type(Histogram) if h.name.startswith("parameters/")]) == 6  # log="all" applied


def no_hooks(model: torch.nn.Module) -> bool:
    for module in model.modules():
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
        if any(hooks) or module._state_dict_hooks or module._load_state_dict_pre_hooks:
            return False
    return all(p._backward_hooks is None and p._post_accumulate_grad_hooks is None for p in model.parameters())


def test_unwatch_removes_every_hook_and_stops_the_histograms(tracelet_start: Callable[..., Run]) -> None:
    pre_hooks = dict(optimizer_module._global_optimizer_pre_hooks)
    run = tracelet_start(backends=["recording"], pytorch={"optimizers": False})
    model, other = cnn(), cnn()
    optimizer = torch.optim.SGD([*model.parameters(), *other.parameters()], lr=0.1)
    tracelet.watch(model, every=1)
    tracelet.watch(other, log="parameters", every=1)  # it gets no gradients here
    assert len(optimizer_module._global_optimizer_pre_hooks) == len(pre_hooks) + 1
    train(model, optimizer, steps=1)
    tracelet.unwatch(model)
    train(model, optimizer, steps=1)
    assert no_hooks(model) and no_hooks(other)
    tracelet.unwatch()
    assert dict(optimizer_module._global_optimizer_pre_hooks) == pre_hooks  # optimizers=False: the hook was watch's
    train(model, optimizer, steps=1)
    assert run.stop(timeout=30)
    steps_and_names = [(h.step, h.name) for h in recording_of(run).of_type(Histogram) if isinstance(h, Histogram)]
    # The second model's names carry its label; after unwatch(model) only it is logged; after unwatch() nothing.
    assert [(step, name.split("/")[1]) for step, name in steps_and_names if name.split("/")[1] == "model2"] == [
        (0, "model2")
    ] * 6 + [(1, "model2")] * 6
    assert [step for step, name in steps_and_names if name.split("/")[1] != "model2"] == [0] * 6
    assert recording_of(run).params["model2/parameters"] == recording_of(run).params["model/parameters"]


def test_stop_unwatches_every_model(tracelet_start: Callable[..., Run]) -> None:
    pre_hooks = dict(optimizer_module._global_optimizer_pre_hooks)
    run = tracelet_start(backends=["recording"])
    model = cnn()
    tracelet.watch(model, log="all", every=1)
    assert run.stop(timeout=30)
    assert dict(optimizer_module._global_optimizer_pre_hooks) == pre_hooks
    assert no_hooks(model)
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=2)  # nothing logged, nothing raised
    assert not recording_of(run).of_type(Histogram)
    tracelet.unwatch(model)  # no active run: nothing to do


def test_watch_checks_its_arguments_and_says_what_to_install(
    tracelet_start: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tracelet_start(backends=["recording"])
    with pytest.raises(ValueError, match=r"^watch\(log='weights'\): log must be one of 'gradients', 'parameters', 'all'$"):
        tracelet.watch(cnn(), log="weights")
    with pytest.raises(ValueError, match=r"^watch\(every=0\): every must be a positive int"):
        tracelet.watch(cnn(), every=0)
    with pytest.raises(TraceletError, match="no framework plugin in this run can watch a builtins.dict"):
        tracelet.watch({})
    run.stop(timeout=30)
    monkeypatch.setenv("TRACELET_PLUGINS", "recording")  # a run without tracelet-pytorch
    tracelet_start(backends=["recording"])
    message = (
        "no framework plugin in this run can watch a torch.nn.modules.container.Sequential; for a "
        "torch.nn.Module install tracelet-pytorch (pip install tracelet-pytorch) and leave it enabled. "
        "Plugins in this run besides backends: none"
    )
    with pytest.raises(TraceletError) as raised:
        tracelet.watch(cnn())
    assert str(raised.value) == message


def test_watch_without_a_run_says_so() -> None:
    assert tracelet.active_run() is None
    with pytest.raises(TraceletError, match=r"no active run: call tracelet.start\(\) before tracelet.watch\(\)"):
        tracelet.watch(cnn())
