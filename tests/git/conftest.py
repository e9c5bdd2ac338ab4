"""Real git repositories made with the ``git`` command in temporary directories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tracelet.run import Run
from tracelet.testing import RecordingBackend


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration; fixed author; no repository above the test's directories."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path_factory.getbasetemp()))
    for variable in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{variable}_NAME", "Tracelet Test")
        monkeypatch.setenv(f"GIT_{variable}_EMAIL", "test@example.invalid")


def _git(directory: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=directory, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(directory, *arguments)``: run the git command there; its output, stripped."""
    return _git


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """``make_repo(name, commits=1)``: a repository on ``main`` with ``commits`` commits of ``train.py``."""

    def make(name: str = "repo", commits: int = 1) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        _git(directory, "init", "-q", "-b", "main")
        for number in range(commits):
            (directory / "train.py").write_text(f"print('version {number}')\n")
            (directory / "README.md").write_text(f"# Project, revision {number}\n")
            _git(directory, "add", "train.py", "README.md")
            _git(directory, "commit", "-q", "-m", f"commit {number}")
        return directory

    return make


@pytest.fixture
def run_git_collector(tracelet_start: Callable[..., Run]) -> Callable[..., RecordingBackend]:
    """Start and stop a run with the git collector (settings as keywords); the recording backend."""

    def run(**settings: object) -> RecordingBackend:
        started = tracelet_start(backends=["recording"], config={"git": settings} if settings else None)
        assert started.stop(timeout=30)
        backend = started.get_plugin("recording")
        assert isinstance(backend, RecordingBackend)
        return backend

    return run


@pytest.fixture
def tracelet_plugins() -> list[str]:
    """The plugins the ``tracelet_start`` fixture loads besides the recording backend."""
    return ["git"]
