"""Which process of a distributed job this is: only global rank 0 logs by default.

Read in Lightning's order (``rank_zero_only``) from ``RANK``, ``LOCAL_RANK``,
``SLURM_PROCID`` and ``JSM_NAMESPACE_RANK``, then from ``torch.distributed``
when the script has already imported and initialised it (torch is never
imported here).
"""

from __future__ import annotations

import os
import sys

__all__ = ["global_rank", "local_rank"]

_GLOBAL = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_LOCAL = ("LOCAL_RANK", "SLURM_LOCALID", "JSM_NAMESPACE_LOCAL_RANK")


def _from_environment(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


def global_rank() -> int | None:
    """This process's global rank, or ``None`` outside a distributed job."""
    rank = _from_environment(_GLOBAL)
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
