"""tracelet_aim.mapping without aim: names <-> AIM name + context, the repeat ledger, histogram edges."""

from __future__ import annotations

import pytest

from tracelet_aim.mapping import DEFAULT_SUBSETS, StepLedger, aim_series, histogram_edges, tracelet_name


@pytest.mark.parametrize(
    ("name", "aim_name", "context"),
    [
        ("train/loss", "loss", {"subset": "train"}),
        ("val/acc/top1", "acc/top1", {"subset": "val"}),
        ("test/x", "x", {"subset": "test"}),
        ("loss", "loss", {}),
        ("train", "train", {}),
        ("train/", "train/", {}),  # nothing after the subset: kept whole
        ("eval/acc", "eval/acc", {}),
        ("system/cpu/percent", "system/cpu/percent", {}),
        ("Verlust/δ", "Verlust/δ", {}),
    ],
)
def test_series_mapping_reverses(name: str, aim_name: str, context: dict[str, str]) -> None:
    assert aim_series(name, DEFAULT_SUBSETS) == (aim_name, context)
    assert tracelet_name(aim_name, {**context, "repeat": 3, "tracelet": "histogram"}) == name


def test_ledger_counts_repeats_and_decreasing_steps() -> None:
    ledger = StepLedger()
    steps = [0, 10, 20, 30, 20, 25, 0, 0, 40, 35, 40]
    assert [ledger.occurrence("s", step) for step in steps] == [1, 1, 1, 1, 2, 1, 2, 3, 1, 1, 2]
    assert ledger.occurrence("other", 0) == 1  # series are counted apart


def test_ledger_rollback_gives_a_retried_batch_the_same_occurrences() -> None:
    ledger = StepLedger()
    for step in range(0, 100, 2):
        ledger.occurrence("s", step)
    ledger.commit()
    batch = [100, 4, 102, 4, 103, 1]
    first = [ledger.occurrence("s", step) for step in batch]
    ledger.rollback()
    assert [ledger.occurrence("s", step) for step in batch] == first == [1, 2, 1, 3, 1, 1]
    ledger.commit()
    assert ledger.occurrence("s", 102) == 2


def test_ledger_seeded_from_a_stored_run() -> None:
    ledger = StepLedger()
    ledger.seed("s", [0, 5, 10], occurrence=1)
    ledger.seed("s", [5], occurrence=2)
    assert [ledger.occurrence("s", step) for step in (5, 10, 15, 0, 7)] == [3, 2, 1, 2, 1]


def test_uniform_edges_are_aims() -> None:
    assert histogram_edges(0.0, 1.5, 3) == (0.0, 0.5, 1.0, 1.5)
    assert histogram_edges(-1.0, 1.0, 1) == (-1.0, 1.0)
