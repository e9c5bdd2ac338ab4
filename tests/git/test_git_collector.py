"""The git collector on real repositories, end to end through a run and the recording backend."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.names import GIT_BRANCH, GIT_COMMIT, GIT_DIFF_ARTIFACT, GIT_DIRTY, GIT_REMOTE_URL, GIT_ROOT
from tracelet.testing import RecordingBackend

Git = Callable[..., str]
MakeRepo = Callable[..., Path]
RunCollector = Callable[..., RecordingBackend]
GIT_TAGS = {GIT_BRANCH, GIT_COMMIT, GIT_DIRTY, GIT_REMOTE_URL, GIT_ROOT}


def git_tags(backend: RecordingBackend) -> dict[str, str]:
    return {name: value for name, value in backend.tags.items() if name in GIT_TAGS}


def patch_of(backend: RecordingBackend) -> bytes | None:
    artifacts = [a for a in backend.of_type(tracelet.Artifact) if a.name == GIT_DIFF_ARTIFACT]  # type: ignore[union-attr]
    if not artifacts:
        return None
    (artifact,) = artifacts
    return Path(artifact.path).read_bytes()  # type: ignore[union-attr]


def test_clean_repository(make_repo: MakeRepo, git: Git, run_git_collector: RunCollector) -> None:
    repo = make_repo(commits=2)
    os.chdir(repo)
    backend = run_git_collector()
    assert git_tags(backend) == {
        GIT_COMMIT: git(repo, "rev-parse", "HEAD"),
        GIT_BRANCH: "main",
        GIT_DIRTY: "false",
        GIT_ROOT: str(repo),
    }
    assert patch_of(backend) is None


def test_found_from_a_subdirectory_and_through_search_path(
    make_repo: MakeRepo, run_git_collector: RunCollector, tmp_path: Path
) -> None:
    repo = make_repo()
    (repo / "src" / "pkg").mkdir(parents=True)
    os.chdir(repo / "src" / "pkg")
    assert git_tags(run_git_collector())[GIT_ROOT] == str(repo)
    os.chdir(tmp_path)
    assert git_tags(run_git_collector(search_path=str(repo / "src")))[GIT_ROOT] == str(repo)


def test_dirty_repository_patch_applies_on_the_commit(
    make_repo: MakeRepo, git: Git, run_git_collector: RunCollector, tmp_path: Path
) -> None:
    repo = make_repo()
    (repo / "train.py").write_text("print('unstaged change')\n")
    (repo / "README.md").write_text("# Staged change\n")
    git(repo, "add", "README.md")
    backend = run_git_collector(search_path=str(repo))
    tags = git_tags(backend)
    assert tags[GIT_DIRTY] == "true"
    patch = patch_of(backend)
    assert patch is not None
    assert b"+print('unstaged change')" in patch
    assert b"+# Staged change" in patch
    # The patch recreates the working tree on top of the recorded commit.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", tags[GIT_COMMIT])
    (tmp_path / "diff.patch").write_bytes(patch)
    git(clone, "apply", str(tmp_path / "diff.patch"))
    assert (clone / "train.py").read_text() == (repo / "train.py").read_text()
    assert (clone / "README.md").read_text() == (repo / "README.md").read_text()


def test_untracked_files_are_listed_not_dirty(make_repo: MakeRepo, run_git_collector: RunCollector) -> None:
    repo = make_repo()
    (repo / "notes.txt").write_text("scratch\n")
    (repo / "outputs").mkdir()
    (repo / "outputs" / "a.csv").write_text("1\n")
    (repo / "outputs" / "b.csv").write_text("2\n")
    backend = run_git_collector(search_path=str(repo))
    assert git_tags(backend)[GIT_DIRTY] == "false"
    patch = patch_of(backend)
    assert patch is not None
    assert patch.decode().splitlines()[1:] == [
        "# Untracked files (2; not in the diff below):",
        "#   notes.txt",
        "#   outputs/",
    ]


def test_patch_is_cut_at_the_size_cap(make_repo: MakeRepo, run_git_collector: RunCollector) -> None:
    repo = make_repo()
    (repo / "train.py").write_text("".join(f"print({i})\n" for i in range(5000)))
    whole = patch_of(run_git_collector(search_path=str(repo)))
    cut = patch_of(run_git_collector(search_path=str(repo), diff_max_bytes=1000))
    assert whole is not None
    assert cut is not None
    header = whole.split(b"diff --git", 1)[0]
    diff = whole[len(header) :]
    assert len(diff) > 1000
    assert cut.startswith(header + diff[:1000])
    assert cut.endswith(f"# tracelet-git: diff cut at 1000 of {len(diff)} bytes (setting git.diff_max_bytes)\n".encode())


def test_detached_head_has_no_branch(make_repo: MakeRepo, git: Git, run_git_collector: RunCollector) -> None:
    repo = make_repo(commits=2)
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    tags = git_tags(run_git_collector(search_path=str(repo)))
    assert tags == {GIT_COMMIT: first, GIT_DIRTY: "false", GIT_ROOT: str(repo)}


def test_repository_without_commits(tmp_path: Path, git: Git, run_git_collector: RunCollector) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    backend = run_git_collector(search_path=str(repo))
    assert git_tags(backend) == {GIT_BRANCH: "main", GIT_DIRTY: "false", GIT_ROOT: str(repo)}
    assert patch_of(backend) is None

    (repo / "train.py").write_text("print('first')\n")
    git(repo, "add", "train.py")
    (repo / "train.py").write_text("print('first, edited')\n")
    backend = run_git_collector(search_path=str(repo))
    assert git_tags(backend) == {GIT_BRANCH: "main", GIT_DIRTY: "true", GIT_ROOT: str(repo)}
    patch = patch_of(backend)
    assert patch is not None
    assert b"(no commit yet)" in patch
    # Staged (against nothing), then unstaged.
    assert patch.index(b"+print('first')") < patch.index(b"+print('first, edited')")


def test_shallow_clone(make_repo: MakeRepo, git: Git, run_git_collector: RunCollector, tmp_path: Path) -> None:
    origin = make_repo("origin", commits=3)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow))
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    assert git_tags(run_git_collector(search_path=str(shallow))) == {
        GIT_COMMIT: git(origin, "rev-parse", "HEAD"),
        GIT_BRANCH: "main",
        GIT_DIRTY: "false",
        GIT_REMOTE_URL: f"file://{origin}",
        GIT_ROOT: str(shallow),
    }


def test_credentials_in_the_remote_url_are_never_delivered(
    make_repo: MakeRepo, git: Git, run_git_collector: RunCollector
) -> None:
    repo = make_repo()
    git(repo, "remote", "add", "backup", "https://ghp_backupTOKEN123@example.com/org/backup.git")
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t-Pa55@git.example.com:8443/org/repo.git")
    (repo / "train.py").write_text("print('dirty, so that a patch is delivered too')\n")
    (repo / "untracked.txt").write_text("x\n")
    backend = run_git_collector(search_path=str(repo))
    assert git_tags(backend)[GIT_REMOTE_URL] == "https://git.example.com:8443/org/repo.git"
    patch = patch_of(backend)
    assert patch is not None
    for secret in ("s3cr3t-Pa55", "alice", "ghp_backupTOKEN123"):
        assert secret not in repr(backend.records)
        assert secret.encode() not in patch


def test_first_remote_when_there_is_no_origin(make_repo: MakeRepo, git: Git, run_git_collector: RunCollector) -> None:
    repo = make_repo()
    git(repo, "remote", "add", "upstream", "git@github.com:org/repo.git")
    assert git_tags(run_git_collector(search_path=str(repo)))[GIT_REMOTE_URL] == "git@github.com:org/repo.git"


def test_not_a_repository(tmp_path: Path, run_git_collector: RunCollector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracelet")
    plain = tmp_path / "plain"
    plain.mkdir()
    os.chdir(plain)
    backend = run_git_collector()
    assert git_tags(backend) == {}
    assert patch_of(backend) is None
    assert [r.getMessage().split(" path=")[0] for r in caplog.records if "git information" in r.getMessage()] == [
        "no git information: not in a git repository"
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert run_git_collector(search_path=str(tmp_path / "does-not-exist")).tags.keys().isdisjoint(GIT_TAGS)


def test_git_executable_missing(make_repo: MakeRepo, tmp_path: Path) -> None:
    """In a fresh interpreter whose PATH has no git, gitpython cannot import: the run goes on without git tags."""
    repo = make_repo()
    script = textwrap.dedent(
        f"""
        import json, logging, tracelet
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s")
        run = tracelet.start(backends=["recording"], config={{"git": {{"search_path": {str(repo)!r}}}}})
        ok = run.stop()
        backend = run.get_plugin("recording")
        print(json.dumps({{"ok": ok, "plugins": list(run.info.plugins), "tags": backend.tags}}))
        """
    )
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TRACELET_", "GIT_PYTHON"))}
    environment.update(PATH=str(empty), TRACELET_STRICT="1", TRACELET_DISABLE_PLUGINS="system")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["ok"] is True
    assert "git" in outcome["plugins"]
    assert not set(outcome["tags"]) & GIT_TAGS
    assert "DEBUG no git information: gitpython cannot run git" in result.stderr
    assert "WARNING" not in result.stderr


def test_disabled_by_configuration(make_repo: MakeRepo, run_git_collector: RunCollector) -> None:
    os.chdir(make_repo())
    assert git_tags(run_git_collector(enabled=False)) == {}


def test_bare_repository(make_repo: MakeRepo, git: Git, run_git_collector: RunCollector, tmp_path: Path) -> None:
    origin = make_repo("origin")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    backend = run_git_collector(search_path=str(bare))
    assert git_tags(backend) == {GIT_COMMIT: git(origin, "rev-parse", "HEAD"), GIT_BRANCH: "main", GIT_REMOTE_URL: str(origin)}
    assert patch_of(backend) is None
