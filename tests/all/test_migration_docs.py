"""Every ```python block of the migration guides (docs/migrating/*.md) runs and passes its own asserts.

Each block runs alone, in its own process, in an empty directory, with every plugin installed and
every backend local: MLflow's default sqlite store (``sqlite:///mlflow.db`` in that directory),
W&B offline, ClearML offline, AIM's repository in that directory; HOME and the tools' settings in
temp dirs. A block that names a server a reader would have carries a marker right above it,
``<!-- test: replace "<text in the block>" "<what the test runs instead>" -->``: the test makes
that substitution (and fails if the text is not in the block).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating"
PAGES = ("mlflow.md", "wandb.md", "clearml.md", "aim.md", "tensorboard.md", "lightning-loggers.md")
_BLOCK = re.compile(r"(?P<markers>(?:<!-- test: .*? -->\n)*)```python\n(?P<code>.*?)```", re.DOTALL)
_REPLACE = re.compile(r'<!-- test: replace "(?P<old>[^"]+)" "(?P<new>[^"]*)" -->')


@attrs.frozen
class Block:
    page: str
    line: int
    code: str


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            code = match["code"]
            for replace in _REPLACE.finditer(match["markers"]):
                assert replace["old"] in code, f"{page}: the marker's text {replace['old']!r} is not in its block"
                code = code.replace(replace["old"], replace["new"])
            unknown = _REPLACE.sub("", match["markers"]).strip()
            assert not unknown, f"{page}: unknown test marker {unknown!r}"
            found.append(Block(page, text.count("\n", 0, match.start("code")) + 1, code))
    return found


def test_every_page_is_in_the_site_and_has_code() -> None:
    assert sorted(path.name for path in DOCS.glob("*.md")) == sorted([*PAGES, "index.md"])
    nav = (DOCS.parents[1] / "mkdocs.yml").read_text(encoding="utf-8")
    for page in ("index.md", *PAGES):
        assert f"migrating/{page}" in nav, page
    counts = {page: sum(1 for block in blocks() if block.page == page) for page in PAGES}
    assert all(count >= 3 for count in counts.values()), counts  # before, after, side by side


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks(), ids=lambda block: f"{block.page}:{block.line}")
def test_block_runs(block: Block, tmp_path: Path) -> None:
    work = tmp_path / "work"
    home = tmp_path / "home"
    work.mkdir()
    home.mkdir()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRACELET_", "MLFLOW_", "WANDB_", "CLEARML_", "AIM_"))
    }
    environment.update(
        HOME=str(home),
        MLFLOW_DISABLE_TELEMETRY="true",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(work),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        WANDB_DATA_DIR=str(home / "wandb-data"),
        CLEARML_OFFLINE_MODE="1",
        TRACELET_STRICT="1",
        # Four backends start in each block; MLflow creating a new sqlite store's tables alone took ~25 s on
        # the shared 2-core machine: room beyond the default 30 s for stop() to deliver everything.
        TRACELET_STOP_TIMEOUT="180",
    )
    script = work / "block.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=environment, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{block.page} line {block.line} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
