"""docs/backends.md is exactly what the four installed backends declare in ``PluginInfo.mapping``."""

from __future__ import annotations

from pathlib import Path

from tracelet.info import MAPPING_KINDS
from tracelet.testing.mapping_table import backend_mappings, main, render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


def test_every_backend_declares_every_kind() -> None:
    infos = backend_mappings()
    assert list(infos) == ["aim", "clearml", "mlflow", "wandb"]
    for name, info in infos.items():
        assert sorted(info.mapping) == sorted(MAPPING_KINDS), name


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(backend_mappings()), (
        "docs/backends.md is stale: run python -m tracelet.testing.mapping_table --write docs/backends.md"
    )
    assert main(["--check", str(PAGE)]) == 0
