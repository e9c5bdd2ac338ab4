"""Settings of the ``system`` collector (keys of ``[tool.tracelet.system]``, ``TRACELET_SYSTEM_*``)."""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_ENV_VARS", "PLUGIN_NAME", "SystemSettings"]

PLUGIN_NAME = "system"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.system]``, ``TRACELET_SYSTEM_*``."""

DEFAULT_ENV_VARS: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTORCH_CUDA_ALLOC_CONF",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONHASHSEED",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NCCL_*",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_NODEID",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
)
"""Variables worth knowing to reproduce a run; none is expected to hold a secret."""


@attrs.frozen
class SystemSettings:
    """What the ``system`` collector samples and records."""

    interval: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds between samples; the first is taken when the run starts."""
    per_core: bool = False
    """Also log ``system/cpu/<i>/percent`` for every logical CPU."""
    gpu: bool = True
    """Sample NVIDIA GPUs through NVML (absent without a GPU, driver or pynvml, silently)."""
    disk_path: str | None = None
    """Whose filesystem ``system/disk/*`` usage describes; default: the working directory at start."""
    environment: bool = True
    """Record the environment (``env.*`` tags) once at start."""
    requirements: bool = True
    """Log the installed distributions as the artifact ``env/requirements.txt`` at start."""
    env_vars: tuple[str, ...] = DEFAULT_ENV_VARS
    """Environment variables recorded as ``env.var.<NAME>`` tags: names or shell patterns (``NCCL_*``).

    Only these are recorded, never the whole environment; a value whose name
    looks secret (``*TOKEN*``, ``*PASSWORD*``, ...) is recorded as ``***``.
    """
