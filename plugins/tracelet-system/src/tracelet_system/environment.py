"""The one-shot environment record: interpreter, machine, GPUs, packages, command line, chosen variables."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import platform
import re
import shlex
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tracelet.plugin import Artifact, Record, Tag, names
from tracelet_system.gpu import GpuInfo

__all__ = [
    "REQUIREMENTS_ARTIFACT",
    "SECRET_MASK",
    "allowed_variables",
    "environment_tags",
    "looks_secret",
    "mask_command_line",
    "requirements_text",
    "write_requirements",
]

REQUIREMENTS_ARTIFACT = "env/requirements.txt"
SECRET_MASK = "***"
_SECRET_WORDS = ("api_key", "apikey", "access_key", "private_key", "token", "secret", "password", "passwd", "credential", "auth")


def looks_secret(name: str) -> bool:
    """Whether a variable or option name suggests its value is a secret (``WANDB_API_KEY``, ``--auth-token``)."""
    normalized = name.lower().replace("-", "_")
    return any(word in normalized for word in _SECRET_WORDS)


def allowed_variables(environ: Mapping[str, str], patterns: Sequence[str]) -> dict[str, str]:
    """The variables whose names match ``patterns`` (exact names or shell patterns), secrets masked."""
    chosen = {name: value for name, value in environ.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)}
    return {name: SECRET_MASK if looks_secret(name) else value for name, value in sorted(chosen.items())}


def mask_command_line(arguments: Sequence[str]) -> list[str]:
    """Mask the value of options named like secrets: ``--token=abc`` and ``--token abc`` become ``***``."""
    masked: list[str] = []
    hide_next = False
    for argument in arguments:
        if hide_next:
            masked.append(SECRET_MASK)
            hide_next = False
            continue
        option, equals, _ = argument.partition("=")
        if option.startswith("-") and looks_secret(option):
            if equals:
                masked.append(f"{option}={SECRET_MASK}")
            else:
                masked.append(argument)
                hide_next = True
            continue
        masked.append(argument)
    return masked


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_tags(
    *,
    cpu_count: int | None,
    memory_total: int,
    gpus: Iterable[GpuInfo],
    gpu_driver: str | None,
    variables: Mapping[str, str],
) -> list[Tag]:
    """Tags describing the interpreter, the machine, the command and the working directory."""
    values: dict[str, str] = {
        names.ENV_PYTHON_VERSION: platform.python_version(),
        "env.python_executable": sys.executable,
        "env.platform": platform.platform(),
        # The only node label until core's rank policy exists: with several nodes, tell them apart by host.
        names.ENV_HOSTNAME: socket.gethostname(),
        "env.cpu_model": _cpu_model(),
        "env.memory_total_bytes": str(memory_total),
        names.ENV_COMMAND: shlex.join(mask_command_line(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))),
        "env.cwd": os.getcwd(),
    }
    if cpu_count is not None:
        values["env.cpu_count"] = str(cpu_count)
    script = sys.argv[0] if sys.argv else ""
    if script and os.path.isfile(script):
        values[names.ENV_SCRIPT] = os.path.abspath(script)
    gpu_list = list(gpus)
    values["env.gpu_count"] = str(len(gpu_list))
    for gpu in gpu_list:
        values[f"env.gpu.{gpu.index}.name"] = gpu.name
        values[f"env.gpu.{gpu.index}.memory_total_bytes"] = str(gpu.memory_total)
    if gpu_driver is not None:
        values["env.gpu_driver"] = gpu_driver
    values.update({f"env.var.{name}": value for name, value in variables.items()})
    return [Tag(name, value) for name, value in values.items()]


def requirements_text() -> str:
    """``name==version`` of every distribution importable by this interpreter, sorted, one per line."""
    found: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            # The first on sys.path wins, as it does for imports.
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={distribution.version}")
    header = f"# Installed distributions of {sys.executable} (Python {platform.python_version()}), recorded by tracelet-system\n"
    return header + "".join(line + "\n" for _, line in sorted(found.items()))


def write_requirements(directory: Path) -> Record:
    """Write :func:`requirements_text` under ``directory``; return the artifact record naming it."""
    path = directory / "requirements.txt"
    path.write_text(requirements_text(), encoding="utf-8")
    return Artifact(str(path), REQUIREMENTS_ARTIFACT)
