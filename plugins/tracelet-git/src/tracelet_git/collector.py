"""The ``git`` collector: one reading of the repository at run start, on the collector's thread."""

from __future__ import annotations

import os

from tracelet.plugin import Artifact, Record, RunInfo, Tag, artifact_dir, hookimpl, names
from tracelet_git.settings import PLUGIN_NAME, GitSettings
from tracelet_git.state import read_state, render_patch

__all__ = ["GitCollector"]


class GitCollector:
    """Reports the repository's state once (tags and the ``git/diff.patch`` artifact); never samples."""

    def __init__(self, settings: GitSettings | None = None) -> None:
        self.settings = settings or GitSettings()

    @hookimpl
    def tracelet_collect_start(self, run: RunInfo) -> list[Record]:
        settings = self.settings
        state = read_state(settings.search_path or os.getcwd(), settings)
        if state is None:
            return []
        tags = {
            names.GIT_COMMIT: state.commit,
            names.GIT_BRANCH: state.branch,
            names.GIT_DIRTY: None if state.dirty is None else str(state.dirty).lower(),
            names.GIT_REMOTE_URL: state.remote_url,
            names.GIT_ROOT: state.root,
        }
        records: list[Record] = [Tag(name, value) for name, value in tags.items() if value is not None]
        if settings.diff and (state.diff or state.untracked):
            # Backends read the file later on their own threads; core deletes the directory after the run.
            path = artifact_dir(run, PLUGIN_NAME) / "diff.patch"
            path.write_bytes(render_patch(state, max_bytes=settings.diff_max_bytes, max_untracked=settings.max_untracked_files))
            records.append(Artifact(str(path), names.GIT_DIFF_ARTIFACT))
        return records

    @hookimpl
    def tracelet_collect_interval(self) -> None:
        return None
