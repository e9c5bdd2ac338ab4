"""Unit-level checks of what the git collector derives: credential stripping and the patch layout."""

from __future__ import annotations

import pytest

from tracelet_git.state import GitState, render_patch, strip_credentials


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("https://user:pass@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://ghp_TOKEN@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("http://u:p@host:8080/r", "http://host:8080/r"),
        ("ssh://git:pw@host/org/repo.git", "ssh://host/org/repo.git"),
        ("ssh://git@host:2222/org/repo.git", "ssh://git@host:2222/org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("user:token@github.com:org/repo.git", "github.com:org/repo.git"),
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
    ],
)
def test_strip_credentials(url: str, stripped: str) -> None:
    assert strip_credentials(url) == stripped


def _state(diff: bytes, untracked: tuple[str, ...] = ()) -> GitState:
    return GitState(root="/r", commit="abc", branch="main", dirty=bool(diff), remote_url=None, diff=diff, untracked=untracked)


def test_render_patch_lists_untracked_files_up_to_the_cap() -> None:
    patch = render_patch(_state(b"diff --git a/x b/x\n", ("a", "b", "c")), max_bytes=100, max_untracked=2)
    assert patch.decode().splitlines() == [
        "# Uncommitted changes of /r on top of abc, recorded by tracelet-git",
        "# Untracked files (3; not in the diff below):",
        "#   a",
        "#   b",
        "#   ... and 1 more",
        "diff --git a/x b/x",
    ]


def test_render_patch_keeps_a_diff_exactly_at_the_cap() -> None:
    diff = b"d" * 50
    assert render_patch(_state(diff), max_bytes=50, max_untracked=0).endswith(diff)
    assert render_patch(_state(diff), max_bytes=49, max_untracked=0).endswith(
        b"cut at 49 of 50 bytes (setting git.diff_max_bytes)\n"
    )
