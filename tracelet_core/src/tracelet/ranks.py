"""Which process of a distributed job this is: only global rank 0 logs by default.

Read in Lightning's order (``rank_zero_only``) from ``RANK``, ``LOCAL_RANK``,
``SLURM_PROCID`` and ``JSM_NAMESPACE_RANK``, then from ``torch.distributed``
when the script has already imported and initialised it (torch is never
imported here). Without ``RANK``, a ``NODE_RANK`` (or ``GROUP_RANK``) above 0
means another node than the first: Lightning's launcher sets only that in the
main process of every further node, before it knows the global rank.
"""

from __future__ import annotations

import os
import sys

__all__ = ["global_rank", "local_rank"]

_GLOBAL = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_LOCAL = ("LOCAL_RANK", "SLURM_LOCALID", "JSM_NAMESPACE_LOCAL_RANK")
_NODE = ("NODE_RANK", "GROUP_RANK")


def _from_environment(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


def global_rank() -> int | None:
    """This process's global rank, or ``None`` outside a distributed job.

    On a node after the first, without ``RANK``, the rank is computed as
    ``node * LOCAL_WORLD_SIZE + local rank`` (``LOCAL_WORLD_SIZE`` taken as 1
    when unset): exact when the launcher says how many processes a node runs,
    and in any case not 0, which is what decides who logs.
    """
    explicit = _from_environment(_GLOBAL[:1])
    if explicit is not None:
        return explicit
    node = _from_environment(_NODE)
    if node:
        return node * max(1, _from_environment(("LOCAL_WORLD_SIZE",)) or 1) + (local_rank() or 0)
    rank = _from_environment(_GLOBAL[1:])
    if rank is not None:
        return rank
    distributed = sys.modules.get("torch.distributed")
    try:
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            return int(distributed.get_rank())
    except Exception:  # noqa: BLE001 - a half-initialised process group is "not distributed" here
        return None
    return None


def local_rank() -> int | None:
    """This process's rank on its node, or ``None`` when unknown."""
    return _from_environment(_LOCAL)
