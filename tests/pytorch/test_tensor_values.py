"""The hostile-input table's torch rows (docs/reliability.md), with real torch: core never imports torch itself."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest
import torch

import tracelet
from tracelet.run import Run


def test_a_tensor_that_requires_grad_is_logged_as_its_value_and_not_kept(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    weight = torch.tensor([3.0], requires_grad=True)
    loss = (weight * 2).sum()
    graph = weakref.ref(loss)
    run.log_metric("loss", loss, step=1)
    del loss
    gc.collect()
    assert graph() is None  # neither the tensor nor its autograd graph is kept
    assert run.flush(5)
    assert run.get_plugin("recording").metric_values("loss") == [(1, 6.0)]  # type: ignore[attr-defined]


def test_a_tensor_of_several_elements_is_refused(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    with pytest.raises(TypeError, match="tracelet: metric 'm' rejected: a Tensor is not a single real number"):
        run.log_metric("m", torch.ones(3, requires_grad=True))
    assert run.stats().rejected == {"metric:m": 1}
    assert tracelet.active_run() is run


def test_a_one_element_parameter_is_logged_as_its_value(tracelet_start: Callable[..., Run]) -> None:
    """``nn.Parameter``'s type lives in ``torch.nn.parameter``: it was refused as not a number (issue 9)."""
    run = tracelet_start(backends=["recording"])
    scale = torch.nn.Parameter(torch.tensor([0.5]))
    run.log_metric("scale", scale, step=2)
    run.log_params({"init_scale": torch.nn.Parameter(torch.tensor(0.25))})
    assert run.flush(5)
    recording = run.get_plugin("recording")
    assert recording.metric_values("scale") == [(2, 0.5)]  # type: ignore[attr-defined]
    assert recording.params == {"init_scale": 0.25}  # type: ignore[attr-defined]
