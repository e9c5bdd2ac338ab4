"""`import tracelet` and plugin discovery import no backend or framework library."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "numpy",
    "torch",
    "mlflow",
    "wandb",
    "clearml",
    "aim",
    "lightning",
    "pytorch_lightning",
    "tensorboard",
    "PIL",
    "git",
    "psutil",
)


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_import_tracelet_imports_no_heavy_library_and_no_plugin() -> None:
    modules = _modules_after("import tracelet")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not {m for m in modules if m.startswith(("tracelet_fixtures", "tracelet.testing"))}


def test_discovery_and_a_run_import_no_heavy_library() -> None:
    modules = _modules_after(
        "import tracelet\nfrom tracelet.plugins import discover\ndiscover()\n"
        "run = tracelet.start(backends=['recording', 'fixture-good'])\nrun.log_metric('x', 1.0)\nrun.stop()"
    )
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_the_cli_library_is_left_to_the_cli() -> None:
    """Rich (the cli extra) draws the command's bars; ``import tracelet``, a run and replay never import it.

    structlog imports ``rich.console`` and a few more when rich is installed (its dev renderer), so what is
    checked is the part only the command uses: ``rich.progress``.
    """
    modules = _modules_after(
        "import tracelet\nimport tracelet.replay, tracelet.console, tracelet.doctor\n"
        "run = tracelet.start(backends=['recording'])\nrun.log_metric('x', 1.0)\nrun.stop()"
    )
    assert "tracelet.console" in modules
    assert not {m for m in modules if m.startswith("rich.progress")}
