"""``tracelet new-plugin``: each kind of package is written in the one plugin shape, installs, and passes its own tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tracelet.cli import main, write_plugin

CORE = Path(__file__).resolve().parents[2] / "tracelet_core"

SHAPE = {
    "backend": ["backend.py", "tests/test_backend.py"],
    "collector": ["collector.py", "tests/test_collector.py"],
    "framework": ["patch.py", "tests/test_patch.py", "tests/examplelib.py"],
}


@pytest.mark.parametrize("kind", sorted(SHAPE))
def test_each_kind_is_written_in_the_one_plugin_shape(tmp_path: Path, kind: str) -> None:
    assert main(["new-plugin", "tracelet-my-thing", "--kind", kind, "--dir", str(tmp_path)]) == 0
    root = tmp_path / "tracelet-my-thing"
    package = root / "src" / "tracelet_my_thing"
    hooks, *tests = SHAPE[kind]
    written = sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
    expected = ["README.md", "pyproject.toml", *tests]
    expected += [f"src/tracelet_my_thing/{name}" for name in ("__init__.py", "settings.py", "py.typed", hooks)]
    assert written == sorted(expected)
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.tracelet]\nmy-thing = "tracelet_my_thing"' in pyproject
    assert '"tracelet-core>=0.1,<0.2"' in pyproject and 'name = "tracelet-my-thing"' in pyproject
    init = (package / "__init__.py").read_text()
    assert 'PLUGIN_NAME = "my-thing"' in init and "def tracelet_plugin_info() -> PluginInfo:" in init
    for path in package.glob("*.py"):  # the plugin kit's one public module, nothing else of core
        imports = re.findall(r"^(?:from|import) (tracelet(?:\.\w+)*)\b(?!_)", path.read_text(), flags=re.MULTILINE)
        assert set(imports) <= {"tracelet.plugin"}, (path.name, imports)


def test_a_bad_name_or_an_existing_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-plugin", "My_Thing", "--kind", "backend", "--dir", str(tmp_path)]) == 2
    assert "plugin name 'My_Thing': use lower-case letters, digits and single hyphens" in capsys.readouterr().err
    write_plugin("thing", "collector", tmp_path)
    assert main(["new-plugin", "thing", "--kind", "backend", "--dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'tracelet-thing'} already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_generated_plugins_install_into_a_fresh_venv_and_pass_their_own_tests(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("TRACELET_", "PYTHON"))}
    environment.update(HOME=str(tmp_path), PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")

    def run(*command: str, cwd: Path = tmp_path) -> str:
        result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    # Real installs, built as wheels (not editable): the templates must be in tracelet-core's wheel.
    run(python, "-m", "pip", "install", "-q", "hatchling", "pytest")
    run(python, "-m", "pip", "install", "-q", "--no-build-isolation", str(CORE))
    for kind in SHAPE:
        run(python, "-m", "tracelet.cli", "new-plugin", f"made-{kind}", "--kind", kind, "--dir", str(tmp_path))
    packages = [str(tmp_path / f"tracelet-made-{kind}") for kind in SHAPE]
    run(python, "-m", "pip", "install", "-q", "--no-build-isolation", *packages)
    listed = run(python, "-m", "tracelet.cli", "plugins")
    for kind in SHAPE:
        assert re.search(rf"^made-{kind} +{kind} +tracelet-made-{kind} +0\.1\.0 +loaded$", listed, re.MULTILINE), listed
        summary = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path / f"tracelet-made-{kind}")
        last = summary.strip().splitlines()[-1]
        # nothing failed; the backend skips only the one case its PluginInfo declares unsupported
        expected = r"\d+ passed, 1 skipped in [0-9.]+s" if kind == "backend" else r"\d+ passed in [0-9.]+s"
        assert re.fullmatch(expected, last), summary
    assert sys.executable  # the test's own interpreter is untouched: everything ran in the venv
