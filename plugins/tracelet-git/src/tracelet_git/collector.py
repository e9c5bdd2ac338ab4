"""The ``git`` collector: one reading of the repository at run start, on the collector's thread."""

from __future__ import annotations

import os

import tracelet
from tracelet.names import GIT_BRANCH, GIT_COMMIT, GIT_DIFF_ARTIFACT, GIT_DIRTY, GIT_REMOTE_URL, GIT_ROOT
from tracelet.records import Artifact, Record, Tag
from tracelet.tempfiles import artifact_dir
from tracelet_git.settings import GitSettings
from tracelet_git.state import read_state, render_patch

__all__ = ["GitCollector"]


class GitCollector:
    """Reports the repository's state once (tags and the ``git/diff.patch`` artifact); never samples."""

    def __init__(self, settings: GitSettings | None = None) -> None:
        self.settings = settings or GitSettings()

    @tracelet.hookimpl
    def tracelet_collect_start(self, run: tracelet.RunInfo) -> list[Record]:
        settings = self.settings
        state = read_state(settings.search_path or os.getcwd(), settings)
        if state is None:
            return []
        tags = {
            GIT_COMMIT: state.commit,
            GIT_BRANCH: state.branch,
            GIT_DIRTY: None if state.dirty is None else str(state.dirty).lower(),
            GIT_REMOTE_URL: state.remote_url,
            GIT_ROOT: state.root,
        }
        records: list[Record] = [Tag(name, value) for name, value in tags.items() if value is not None]
        if settings.diff and (state.diff or state.untracked):
            # Backends read the file later on their own threads; tracelet.tempfiles deletes it after the run.
            path = artifact_dir(run, "git") / "diff.patch"
            path.write_bytes(render_patch(state, max_bytes=settings.diff_max_bytes, max_untracked=settings.max_untracked_files))
            records.append(Artifact(str(path), GIT_DIFF_ARTIFACT))
        return records

    @tracelet.hookimpl
    def tracelet_collect_interval(self) -> None:
        return None
