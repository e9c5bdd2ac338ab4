"""Reading a repository's state with gitpython, for the ``git`` collector.

Every unusual situation is an outcome, not an exception:

- not in a repository, or git not installed: :func:`read_state` returns ``None``;
- a repository without commits: no ``commit``, ``branch`` is the unborn branch,
  the diff is the staged changes against the empty tree then the unstaged ones;
- a detached HEAD: no ``branch``;
- a shallow clone: read like any other;
- a bare repository: no ``root``, ``dirty`` nor diff;
- a git command that fails (``safe.directory``, a corrupt index) leaves its
  part out, with one debug line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from tracelet.plugin import get_logger
from tracelet_git.settings import GitSettings

if TYPE_CHECKING:
    import git

__all__ = ["GitState", "read_state", "render_patch", "strip_credentials"]

_log = get_logger()

# ``git diff`` options that keep the patch plain: no colours, no user-configured external tools.
_DIFF_OPTIONS = ("--no-color", "--no-ext-diff", "--no-textconv")


@attrs.frozen
class GitState:
    """What the collector reports; ``None`` fields are unknown or do not apply."""

    root: str | None
    commit: str | None
    branch: str | None
    dirty: bool | None
    remote_url: str | None
    diff: bytes
    """Staged and unstaged changes to tracked files, as ``git diff`` prints them."""
    untracked: tuple[str, ...]
    """Untracked paths (a directory with only untracked files is listed once, with a ``/``)."""


def strip_credentials(url: str) -> str:
    """Remove a password or token embedded in a remote URL.

    ``https://user:token@host/x`` and ``https://token@host/x`` become
    ``https://host/x``, and so does any URL with a password (``ssh://git:pw@host/x``
    becomes ``ssh://host/x``); an ssh login name without a password
    (``ssh://git@host/x``, scp-like ``git@host:x``) is kept: it is not a secret.
    """
    if "://" in url:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        host = parts.netloc.rpartition("@")[2]
        keep_user = parts.scheme in ("ssh", "git+ssh", "ssh+git") and parts.username and parts.password is None
        netloc = f"{parts.username}@{host}" if keep_user else host
        return urlunsplit(parts._replace(netloc=netloc))
    user, at, rest = url.partition("@")
    if at and "/" not in user and ":" in user:  # "user:password@host:path" is not scp syntax: drop the user part
        return rest
    return url


def read_state(path: str, settings: GitSettings) -> GitState | None:
    """The state of the repository containing ``path``, or ``None`` when there is none to read."""
    try:
        import git  # raises ImportError when no git executable is found
    except ImportError as error:
        _log.debug("no git information: gitpython cannot run git", error=str(error))
        return None
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        _log.debug("no git information: not in a git repository", path=path, error=f"{type(error).__name__}: {error}")
        return None
    with repo:
        return _read(repo, settings)


def _read(repo: git.Repo, settings: GitSettings) -> GitState:
    import git

    def run(command: str, *arguments: str) -> bytes | None:
        """Run ``git <command> <arguments>``; ``None`` (and a debug line) when it fails."""
        try:
            output: bytes = getattr(repo.git, command)(
                *arguments, stdout_as_string=False, strip_newline_in_stdout=False, kill_after_timeout=settings.timeout
            )
        except git.GitCommandError as error:
            _log.debug("git command failed; its part is left out", command=command, error=str(error).strip())
            return None
        return output

    root = repo.working_tree_dir
    has_commit = repo.head.is_valid()
    commit = repo.head.commit.hexsha if has_commit else None
    branch = None if repo.head.is_detached else repo.head.reference.name
    dirty: bool | None = None
    diff = b""
    untracked: tuple[str, ...] = ()
    if root is not None:
        status = run("status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=normal")
        if status is not None:
            entries = [entry for entry in status.split(b"\0") if entry]
            dirty = any(not entry.startswith(b"??") for entry in entries)
            untracked = tuple(entry[3:].decode(errors="replace") for entry in entries if entry.startswith(b"??"))
        if settings.diff and dirty:
            if has_commit:
                diff = run("diff", *_DIFF_OPTIONS, "HEAD") or b""
            else:  # no HEAD to compare with: staged changes (against nothing), then unstaged ones
                diff = (run("diff", *_DIFF_OPTIONS, "--cached") or b"") + (run("diff", *_DIFF_OPTIONS) or b"")
    return GitState(
        root=str(Path(root)) if root is not None else None,
        commit=commit,
        branch=branch,
        dirty=dirty,
        remote_url=_remote_url(repo),
        diff=diff,
        untracked=untracked,
    )


def _remote_url(repo: git.Repo) -> str | None:
    """``origin``'s URL, else the first remote's, credentials stripped."""
    remotes: list[Any] = list(repo.remotes)
    if not remotes:
        return None
    remote = next((r for r in remotes if r.name == "origin"), remotes[0])
    try:
        url = str(remote.url)
    except Exception as error:  # noqa: BLE001 - a remote without a URL is odd config, not a failure of the run
        _log.debug("remote has no readable URL", remote=remote.name, error=str(error))
        return None
    return strip_credentials(url)


def render_patch(state: GitState, *, max_bytes: int, max_untracked: int) -> bytes:
    """The patch artifact: a comment header with the untracked files, then the diff, cut at ``max_bytes``.

    ``git apply`` ignores the ``#`` lines before the first ``diff --git``, so an
    uncut patch applies on top of ``state.commit``.
    """
    lines = [f"# Uncommitted changes of {state.root} on top of {state.commit or '(no commit yet)'}, recorded by tracelet-git"]
    if state.untracked:
        lines.append(f"# Untracked files ({len(state.untracked)}; not in the diff below):")
        lines += [f"#   {path}" for path in state.untracked[:max_untracked]]
        if len(state.untracked) > max_untracked:
            lines.append(f"#   ... and {len(state.untracked) - max_untracked} more")
    header = ("\n".join(lines) + "\n").encode()
    if len(state.diff) <= max_bytes:
        return header + state.diff
    note = f"\n# tracelet-git: diff cut at {max_bytes} of {len(state.diff)} bytes (setting git.diff_max_bytes)\n"
    return header + state.diff[:max_bytes] + note.encode()
