"""The environment record at start: tags, the requirements artifact, allow-listed variables, masking."""

from __future__ import annotations

import gc
import os
import platform
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

import tracelet
from tracelet.names import ENV_COMMAND, ENV_HOSTNAME, ENV_PYTHON_VERSION, ENV_SCRIPT
from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_system.environment import SECRET_MASK, looks_secret, mask_command_line


def _recording(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def test_environment_tags_describe_this_interpreter_and_machine(start_system: Callable[..., Run], tmp_path: Path) -> None:
    run = start_system()
    run.stop()
    tags = _recording(run).tags
    assert tags[ENV_PYTHON_VERSION] == platform.python_version()
    assert tags["env.python_executable"] == sys.executable
    assert tags["env.platform"] == platform.platform()
    assert tags[ENV_HOSTNAME] == socket.gethostname()
    assert tags["env.cpu_count"] == str(psutil.cpu_count())
    assert tags["env.cpu_model"]
    assert tags["env.memory_total_bytes"] == str(psutil.virtual_memory().total)
    assert tags["env.cwd"] == str(tmp_path)
    assert tags[ENV_COMMAND].split()[0] == sys.orig_argv[0]
    # pytest's argv[0] is a file (its entry script), so the script is recorded.
    assert tags[ENV_SCRIPT] == os.path.abspath(sys.argv[0])


def test_requirements_artifact_lists_installed_distributions(start_system: Callable[..., Run]) -> None:
    run = start_system()
    run.stop()
    (artifact,) = _recording(run).of_type(tracelet.Artifact)
    assert artifact.name == "env/requirements.txt"
    lines = Path(artifact.path).read_text().splitlines()
    assert lines[0].startswith("# Installed distributions of ")
    assert f"psutil=={psutil.__version__}" in lines
    assert f"tracelet-core=={tracelet.__version__}" in lines
    assert "tracelet-system==0.1.0" in lines
    assert lines[1:] == sorted(lines[1:], key=lambda line: line.split("==")[0].lower())


def test_requirements_can_be_turned_off(
    start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend]
) -> None:
    run = start_system(requirements=False, environment=False)
    wait_for_samples(run, 1)
    run.stop()
    assert not _recording(run).of_type(tracelet.Artifact)
    assert not [name for name in _recording(run).tags if name.startswith("env.")]


def test_only_allow_listed_variables_are_recorded_and_secrets_masked(
    start_system: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYAPP_SEED", "42")
    monkeypatch.setenv("MYAPP_API_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("MYAPP_DB_PASSWORD", "hunter2-value")
    monkeypatch.setenv("OTHER_SETTING", "not-asked-for")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("TRACELET_SYSTEM_ENV_VARS", "MYAPP_*,CUDA_VISIBLE_DEVICES")
    run = start_system()
    run.stop()
    backend = _recording(run)
    variables = {name: value for name, value in backend.tags.items() if name.startswith("env.var.")}
    assert variables == {
        "env.var.CUDA_VISIBLE_DEVICES": "0,1",
        "env.var.MYAPP_API_TOKEN": SECRET_MASK,
        "env.var.MYAPP_DB_PASSWORD": SECRET_MASK,
        "env.var.MYAPP_SEED": "42",
    }
    delivered = repr(backend.records)
    for secret in ("s3cr3t-value", "hunter2-value", "not-asked-for"):
        assert secret not in delivered


def test_default_allow_list_records_no_other_variable(start_system: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    run = start_system()
    run.stop()
    backend = _recording(run)
    assert backend.tags["env.var.OMP_NUM_THREADS"] == "3"
    assert "env.var.WANDB_API_KEY" not in backend.tags
    assert "wandb-secret-value" not in repr(backend.records)


@pytest.mark.parametrize(
    ("name", "secret"),
    [("WANDB_API_KEY", True), ("HF_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True), ("PGPASSWORD", True),
     ("MY_PASSWD", True), ("GOOGLE_APPLICATION_CREDENTIALS", True), ("--auth-header", True),
     ("CUDA_VISIBLE_DEVICES", False), ("OMP_NUM_THREADS", False), ("--lr", False)],
)  # fmt: skip
def test_looks_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_command_line_masks_secret_options() -> None:
    arguments = ["python", "train.py", "--api-key", "abc", "--token=xyz", "--lr", "0.1", "--password"]
    assert mask_command_line(arguments) == ["python", "train.py", "--api-key", "***", "--token=***", "--lr", "0.1", "--password"]


def test_artifact_directory_is_removed_when_the_run_is_gone(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    # Not the fixture's run: the fixture keeps its runs alive until teardown.
    os.chdir(tmp_path)
    run = tracelet.start(backends=["recording"], config={"system": {"interval": 60}})
    run.stop()
    (artifact,) = _recording(run).of_type(tracelet.Artifact)
    directory = Path(artifact.path).parent
    assert directory.is_dir()
    del run
    gc.collect()
    assert not directory.exists()


def test_artifact_outlives_delivery_at_interpreter_exit(tmp_path: Path) -> None:
    """A script that never calls stop(): core stops the run at exit, then the file is removed."""
    script = tmp_path / "train.py"
    copy = tmp_path / "delivered.txt"
    script.write_text(
        textwrap.dedent(
            f"""
            import pathlib, time
            import attrs
            import tracelet
            from tracelet.testing import RecordingBackend, recording_plugin

            class CopyingBackend(RecordingBackend):
                # Reads each artifact on the worker thread, slowly, as an upload would.
                @tracelet.hookimpl
                def tracelet_backend_log_artifacts(self, artifacts):
                    time.sleep(0.5)
                    for artifact in artifacts:
                        pathlib.Path({str(copy)!r}).write_text(pathlib.Path(artifact.path).read_text())
                        print("ARTIFACT", artifact.path)

            declared = recording_plugin("copying").tracelet_plugin_info()

            class Plugin:
                @tracelet.hookimpl
                def tracelet_plugin_info(self):
                    return attrs.evolve(declared, factory=CopyingBackend)

            tracelet.register_plugin(Plugin())
            tracelet.start(backends=["copying"], config={{"system": {{"interval": 60}}}})
            """
        )
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACELET_")}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("ARTIFACT ")]
    path = Path(line.split(" ", 1)[1])
    assert "psutil==" in copy.read_text()
    assert not path.parent.exists()
