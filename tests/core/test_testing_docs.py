"""The testing kit's documentation runs: its example files are written out and run with pytest.

A code block that starts with ``# <name>.py`` is a file of an example test
project: docs/testing.md, and the testing section of docs/plugin-guide.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```python\n# (?P<file>[\w/.-]+\.py)\n(?P<code>.*?)```", re.DOTALL)
_GUIDE_SECTION = "## Testing your plugin with the testing kit"


def _example_files(text: str) -> dict[str, str]:
    return {match["file"]: match["code"] for match in _BLOCK.finditer(text)}


def _run_examples(files: dict[str, str], directory: Path) -> str:
    for name, code in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(code)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRACELET_")}
    environment.update(HOME=str(directory), TRACELET_DISABLE_PLUGINS=os.environ.get("TRACELET_DISABLE_PLUGINS", ""))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(directory), str(directory)],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    return result.stdout


def test_the_testing_page_examples_pass(tmp_path: Path) -> None:
    files = _example_files((DOCS / "testing.md").read_text())
    assert sorted(files) == ["conftest.py", "test_isolation.py", "test_recording_conformance.py", "test_training.py"]
    output = _run_examples(files, tmp_path)
    assert re.search(r"^21 passed, 2 skipped in", output, re.MULTILINE), output
    assert "recording does not support 'permanent_error': it keeps every record in memory" in output
    assert "recording does not support 'resume_setting'" in output


def test_the_plugin_guides_testing_example_passes(tmp_path: Path) -> None:
    guide = (DOCS / "plugin-guide.md").read_text()
    section = guide[guide.index(_GUIDE_SECTION) :]
    following = section.find("\n## ", len(_GUIDE_SECTION))
    files = _example_files(section if following < 0 else section[:following])
    assert sorted(files) == ["test_plugin_guide.py"]
    assert re.search(r"^1 passed in", _run_examples(files, tmp_path), re.MULTILINE)
