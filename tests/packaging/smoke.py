"""What ``pip install tracelet-core tracelet-mlflow tracelet-lightning ...`` gives a user, checked.

Run by ``tox -e packaging`` with the python of a fresh virtual environment
into which only the built wheels (and their dependencies from the index) were
installed; see ``build_and_install.py``. It must not see the source folders:
it fails if a package was imported from anywhere but that environment.

Checks, for every distribution: installed from its wheel, ``py.typed`` shipped,
tracelet-core's range declared by each plugin, its entry point in the
``tracelet`` group loading a plugin of the declared name and kind; the
``tracelet`` command works; and ``tracelet.start()`` with MLflow on a
temporary sqlite store delivers a metric, a param and a tag, read back with
``MlflowClient``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# distribution -> (import package, entry-point name, plugin kind)
PACKAGES = {
    "tracelet-core": ("tracelet", "recording", "backend"),
    "tracelet-mlflow": ("tracelet_mlflow", "mlflow", "backend"),
    "tracelet-lightning": ("tracelet_lightning", "lightning", "framework"),
    "tracelet-pytorch": ("tracelet_pytorch", "pytorch", "framework"),
    "tracelet-system": ("tracelet_system", "system", "collector"),
    "tracelet-git": ("tracelet_git", "git", "collector"),
    "tracelet-wandb": ("tracelet_wandb", "wandb", "backend"),
    "tracelet-aim": ("tracelet_aim", "aim", "backend"),
    "tracelet-clearml": ("tracelet_clearml", "clearml", "backend"),
    "tracelet-argparse": ("tracelet_argparse", "argparse", "framework"),
    "tracelet-hydra": ("tracelet_hydra", "hydra", "framework"),
}
CORE_RANGE = "tracelet-core<0.2,>=0.1"


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"packaging smoke test FAILED: {message}")


def check_installed_files() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    for distribution, (package, _, _) in PACKAGES.items():
        module = importlib.import_module(package)
        location = Path(module.__file__ or "").resolve()
        check(site_packages in location.parents, f"{package} imported from {location}, not from the venv's {site_packages}")
        direct_url = importlib.metadata.distribution(distribution).read_text("direct_url.json") or ""
        check('"editable": true' not in direct_url, f"{distribution} is an editable install: {direct_url}")
        check(importlib.resources.files(package).joinpath("py.typed").is_file(), f"{distribution}: py.typed is not installed")
        requires = importlib.metadata.requires(distribution) or []
        if distribution != "tracelet-core":
            check(CORE_RANGE in requires, f"{distribution} does not declare {CORE_RANGE!r}: {requires}")


def check_entry_points() -> None:
    entry_points = {entry_point.name: entry_point for entry_point in importlib.metadata.entry_points(group="tracelet")}
    for distribution, (package, name, kind) in PACKAGES.items():
        check(name in entry_points, f"entry point {name!r} of {distribution} missing: {sorted(entry_points)}")
        entry_point = entry_points[name]
        check(entry_point.dist is not None and entry_point.dist.name == distribution, f"{name} comes from {entry_point.dist}")
        if distribution != "tracelet-core":
            check(entry_point.value == package, f"entry point {name} = {entry_point.value!r}; expected the package {package!r}")
        plugin = entry_point.load()
        info = plugin.tracelet_plugin_info()
        check((info.name, info.kind.value) == (name, kind), f"{name} declares {info.name!r} of kind {info.kind.value!r}")
        if distribution != "tracelet-core":
            declared_name = plugin.PLUGIN_NAME
            check(declared_name == name, f"{package}.PLUGIN_NAME is {declared_name!r}")
    command = Path(sysconfig.get_path("scripts")) / "tracelet"
    check(command.is_file(), f"the console script {command} is not installed")
    listing = subprocess.run([str(command), "plugins"], capture_output=True, text=True, check=True).stdout
    for _, (_, name, _) in PACKAGES.items():
        line = next((row for row in listing.splitlines() if row.split()[:1] == [name]), "")
        check("loaded" in line, f"`tracelet plugins` does not list {name} as loaded:\n{listing}")


def check_mlflow_delivery(workdir: Path) -> None:
    from mlflow import MlflowClient

    import tracelet

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    run = tracelet.start(
        project="packaging-smoke",
        backends=["mlflow"],
        config={"mlflow": {"tracking_uri": uri}},
        strict=True,  # any plugin that fails to load fails the smoke test
    )
    run.log_metric("loss", 0.25, step=3)
    run.log_params({"lr": 0.01})
    run.set_tags({"stage": "smoke"})
    check(tracelet.stop() is True, f"stop() did not deliver everything: {run.stats()}")
    mlflow_run_id = run.get_plugin("mlflow").run_id
    stored = MlflowClient(tracking_uri=uri).get_run(mlflow_run_id)
    history = MlflowClient(tracking_uri=uri).get_metric_history(mlflow_run_id, "loss")
    check([(m.step, m.value) for m in history] == [(3, 0.25)], f"metric history {history}")
    check(stored.data.params.get("lr") == "0.01", f"params {stored.data.params}")
    check(stored.data.tags.get("stage") == "smoke", f"tags {stored.data.tags}")
    check(stored.info.status == "FINISHED", f"status {stored.info.status}")


def main() -> None:
    check("PYTHONPATH" not in os.environ, "PYTHONPATH is set: the smoke test must see the installed wheels only")
    check_installed_files()
    check_entry_points()
    with tempfile.TemporaryDirectory(prefix="tracelet-packaging-") as directory:
        os.chdir(directory)  # the spool and anything relative lands here, not in the repository
        check_mlflow_delivery(Path(directory))
        os.chdir("/")
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in PACKAGES)
    print(f"packaging smoke test passed: {versions} (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
