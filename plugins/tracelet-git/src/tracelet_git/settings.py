"""Settings of the ``git`` collector (keys of ``[tool.tracelet.git]``, ``TRACELET_GIT_*``)."""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "GitSettings"]

PLUGIN_NAME = "git"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.git]``, ``TRACELET_GIT_*``."""


@attrs.frozen
class GitSettings:
    """Where to look for the repository and how much of the uncommitted state to keep."""

    search_path: str | None = None
    """Directory whose repository is recorded (its parents are searched); default: the working directory."""
    diff: bool = True
    """Log the uncommitted diff and the untracked files as the artifact ``git/diff.patch``."""
    diff_max_bytes: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(0))
    """The patch artifact is cut at this many bytes of diff, with a note saying so."""
    max_untracked_files: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    """At most this many untracked paths are listed in the patch artifact."""
    timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """Seconds any one git command may take before it is killed."""
