"""Well-known record names: the contract between collectors and backends.

Collectors emit records under these names; a backend that has a native place
for one (MLflow's ``mlflow.source.git.commit`` tag, W&B's git fields) maps it
there, and logs the rest as ordinary tags, params and metrics.
"""

from __future__ import annotations

__all__ = [
    "ENV_COMMAND",
    "ENV_HOSTNAME",
    "ENV_PYTHON_VERSION",
    "ENV_SCRIPT",
    "GIT_BRANCH",
    "GIT_COMMIT",
    "GIT_DIFF_ARTIFACT",
    "GIT_DIRTY",
    "GIT_REMOTE_URL",
    "GIT_ROOT",
    "SYSTEM_METRIC_PREFIX",
    "TRACELET_PARENT_RUN_ID",
    "TRACELET_PLUGINS",
    "TRACELET_RANK",
    "TRACELET_VERSION",
]

# Tags set by tracelet-git (values are strings).
GIT_COMMIT = "git.commit"
"""Full SHA of HEAD."""
GIT_BRANCH = "git.branch"
"""Branch name; absent on a detached HEAD."""
GIT_DIRTY = "git.dirty"
""" ``"true"`` or ``"false"``: uncommitted changes to tracked files."""
GIT_REMOTE_URL = "git.remote_url"
"""URL of the ``origin`` remote (or the first remote), credentials stripped."""
GIT_ROOT = "git.root"
"""Top-level directory of the working tree."""
GIT_DIFF_ARTIFACT = "git/diff.patch"
"""Artifact name of the uncommitted diff."""

# Tags set by tracelet-system's environment record.
ENV_SCRIPT = "env.script"
"""Absolute path of the script being run (``sys.argv[0]``)."""
ENV_COMMAND = "env.command"
"""The full command line."""
ENV_HOSTNAME = "env.hostname"
ENV_PYTHON_VERSION = "env.python_version"

SYSTEM_METRIC_PREFIX = "system/"
"""Prefix of every periodic resource metric (``system/cpu/percent``, ``system/gpu/0/utilization``)."""

# Tags every backend may add about Tracelet itself.
TRACELET_VERSION = "tracelet.version"
TRACELET_PLUGINS = "tracelet.plugins"
TRACELET_RANK = "tracelet.rank"
TRACELET_PARENT_RUN_ID = "tracelet.parent_run_id"
"""Set by core on every child run (``run.child()``): the parent's Tracelet run id."""
