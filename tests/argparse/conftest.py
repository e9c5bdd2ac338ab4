"""Real ``argparse`` parsers, in process and in subprocesses (where the exit code and output matter)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def tracelet_plugins() -> list[str]:
    """The plugins the ``tracelet_start`` fixture loads besides the recording backend."""
    return ["argparse"]


def _script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    env.update(HOME=str(tmp_path), TRACELET_PLUGINS="recording,argparse", TRACELET_SPOOL_DIR=str(tmp_path / "spool"))
    env.update(extra)
    return env


@pytest.fixture
def run_script(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_script(source, *argv, **env)``: run ``source`` as ``train.py`` in a fresh interpreter."""

    def run(source: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        script = tmp_path / "train.py"
        script.write_text(textwrap.dedent(source))
        return subprocess.run(
            [sys.executable, str(script), *argv],
            cwd=tmp_path,
            env=_script_env(tmp_path, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
