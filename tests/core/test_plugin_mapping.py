"""``PluginInfo.mapping``: a backend's declaration of where each record kind appears, and the table rendered from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracelet.plugin import MAPPING_KINDS, PluginInfo, PluginKind
from tracelet.testing.mapping_table import main, render


def _info(name: str, mapping: dict[str, str]) -> PluginInfo:
    return PluginInfo(name=name, kind=PluginKind.BACKEND, factory=object, mapping=mapping)


def test_the_kinds() -> None:
    assert list(MAPPING_KINDS) == ["metric", "x-axis", "media", "params", "tags", "artifacts", "status"]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"PluginInfo.mapping: unknown kinds \['metrics'\]; the kinds are \['metric', "):
        _info("x", {"metrics": "a"})


@pytest.mark.parametrize("text", ["", "  ", "two\nlines"])
def test_a_cell_is_one_non_empty_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"PluginInfo.mapping\['tags'\] must be one non-empty line"):
        _info("x", {"tags": text})


def test_render_one_row_per_kind_one_column_per_backend() -> None:
    page = render({"one": _info("one", {"metric": "a | b", "status": "done"}), "two": _info("two", {"tags": "labels"})})
    rows = [line for line in page.splitlines() if line.startswith("|")]
    assert rows[:3] == ["| Tracelet | `one` | `two` |", "|---|---|---|", "| **Metric names** | a \\| b | not declared |"]
    assert rows[-1] == "| **Run status** | done | not declared |"
    assert "| **Tags** | not declared | labels |" in rows
    assert len(rows) == 2 + len(MAPPING_KINDS)


def test_check_fails_on_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "backends.md"
    assert main(["--write", str(page)]) == 0
    assert main(["--check", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert main(["--check", str(page)]) == 1
    assert f"{page} is not what the installed backends declare" in capsys.readouterr().err
