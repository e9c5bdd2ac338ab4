"""Secret redaction, end to end: nothing secret reaches a backend or the spool's bytes.

Secrets are planted where users leak them: an environment variable (read by
a collector registered here, as tracelet-system's environment collector does;
that plugin is not installed in the core env), a param, a tag, a URL with
credentials, a command line and a text snippet. Two deliveries are checked:
the recording backend (what a plugin receives) and a hung backend whose
records end up in the spool (every file of it, byte by byte).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tracelet
from tracelet.redact import MASK, Redactor, scrub
from tracelet.run import Run
from tracelet.spool import MAGIC, decode_record, iter_frames
from tracelet.testing import RecordingBackend

SECRET = "sk-live-7f3a9c1e5b2d"
ENV_VARIABLES = ("TRAINER_HF_TOKEN", "TRAINER_HOME_DIR")


class EnvironmentCollector:
    """Reads environment variables into ``env.<NAME>`` tags once the test says so."""

    go = threading.Event()

    @tracelet.hookimpl
    def tracelet_collect_interval(self) -> float:
        return 0.01

    @tracelet.hookimpl
    def tracelet_collect_sample(self) -> list[tracelet.Tag]:
        if not self.go.is_set():
            return []
        self.go.clear()
        tags = [tracelet.Tag(f"env.{name}", os.environ[name]) for name in ENV_VARIABLES]
        return [*tags, tracelet.Tag("env.command", f"train.py --lr=0.1 --wandb-api-key={SECRET}")]


class EnvironmentPlugin:
    @tracelet.hookimpl
    def tracelet_plugin_info(self) -> tracelet.PluginInfo:
        return tracelet.PluginInfo(
            name="test-environment",
            kind=tracelet.PluginKind.COLLECTOR,
            factory=lambda settings: EnvironmentCollector(),
            enabled_by_default=False,
        )


@pytest.fixture
def environment_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    monkeypatch.setenv("TRAINER_HF_TOKEN", SECRET)
    monkeypatch.setenv("TRAINER_HOME_DIR", "/home/alice")
    EnvironmentCollector.go.clear()
    tracelet.register_plugin(EnvironmentPlugin())
    yield EnvironmentCollector.go
    tracelet.unregister_plugin("test-environment")


def _log_secrets(run: Run, collector: threading.Event) -> None:
    run.log_params(
        {
            "wandb": {"api_key": SECRET, "project": "demo"},
            "db_password": SECRET,
            "max_tokens": 512,  # a word that merely contains a pattern is no secret
            "data_url": f"https://alice:{SECRET}@data.example.com/train.csv",
            "mirrors": [f"https://{SECRET}@mirror.example.com/a"],
        }
    )
    run.set_tags({"auth_token": SECRET, "git.remote_url": f"https://oauth2:{SECRET}@gitlab.example.com/team/repo.git"})
    run.log_text("notes", f"resumed with export HF_TOKEN={SECRET} from https://bob:{SECRET}@host.example/x")
    run.log_text("Authorization", f"Bearer {SECRET}")
    run.log_record(tracelet.Param("plugin.credentials", SECRET))  # what a framework plugin might submit
    collector.set()
    deadline = time.monotonic() + 5
    while collector.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not collector.is_set(), "the collector did not sample"


EXPECTED_PARAMS = {
    "wandb.api_key": MASK,
    "wandb.project": "demo",
    "db_password": MASK,
    "max_tokens": 512,
    "data_url": "https://data.example.com/train.csv",
    "mirrors": '["https://mirror.example.com/a"]',
    "plugin.credentials": MASK,
}
EXPECTED_TAGS = {
    "auth_token": MASK,
    "git.remote_url": "https://gitlab.example.com/team/repo.git",
    "env.TRAINER_HF_TOKEN": MASK,
    "env.TRAINER_HOME_DIR": "/home/alice",
    "env.command": f"train.py --lr=0.1 --wandb-api-key={MASK}",
}
EXPECTED_TEXTS = {
    "notes": f"resumed with export HF_TOKEN={MASK} from https://host.example/x",
    "Authorization": MASK,
}


def test_secrets_never_reach_a_backend(tracelet_start: Callable[..., Run], environment_collector: threading.Event) -> None:
    run = tracelet_start(backends=["recording"], config={"test-environment": {"enabled": True}})
    _log_secrets(run, environment_collector)
    assert run.stop(timeout=10) is True
    recording = run.get_plugin("recording")
    assert isinstance(recording, RecordingBackend)
    assert recording.params == EXPECTED_PARAMS
    assert recording.tags == EXPECTED_TAGS
    assert {text.name: text.text for text in recording.of_type(tracelet.Text)} == EXPECTED_TEXTS
    assert SECRET not in repr(recording.records) and SECRET not in repr(recording.calls)
    assert run.stats().redacted == 11


def _spooled_records(directory: Path) -> list[object]:
    records: list[object] = []
    for segment in sorted(directory.rglob("*.seg")):
        with segment.open("rb") as file:
            assert file.read(len(MAGIC)) == MAGIC
            records.extend(decode_record(payload) for payload, _ in iter_frames(file, len(MAGIC), segment.stat().st_size))
    return records


def test_secrets_never_reach_the_spool(tracelet_start: Callable[..., Run], environment_collector: threading.Event) -> None:
    run = tracelet_start(backends=["fixture-hanging"], config={"test-environment": {"enabled": True}})
    run.log_metric("loss", 1.0, step=0)
    hanging = run.get_plugin("fixture-hanging")
    assert hanging.entered.wait(5)  # type: ignore[attr-defined]  # the backend is stuck: what follows is spooled
    _log_secrets(run, environment_collector)
    assert run.stop(timeout=2) is False
    spool = Path(".tracelet/spool", run.id, "fixture-hanging")
    records = _spooled_records(spool)
    params = {r.name: r.value for r in records if isinstance(r, tracelet.Param)}
    tags = {r.name: r.value for r in records if isinstance(r, tracelet.Tag)}
    texts = {r.name: r.text for r in records if isinstance(r, tracelet.Text)}
    assert (params, tags, texts) == (EXPECTED_PARAMS, EXPECTED_TAGS, EXPECTED_TEXTS)
    files = [path for path in spool.rglob("*") if path.is_file()]
    assert any(path.suffix == ".seg" for path in files)
    for path in files:  # segments, meta.json, acked.json: not one byte of the secret
        assert SECRET.encode() not in path.read_bytes(), path


# --- the matching rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("wandb.apiKey", True),
        ("env.DB_PASSWORD", True),
        ("openai-api-key", True),
        ("aws_secret_access_key", True),
        ("Authorization", True),
        ("smtp.passwd", True),
        ("gcp/credentials", True),
        ("max_tokens", False),
        ("tokenizer", False),
        ("author", False),
        ("git.remote_url", False),
        ("secretary_count", False),
    ],
)
def test_a_pattern_matches_whole_words_of_the_name(name: str, secret: bool) -> None:
    assert Redactor().is_secret(name) is secret


def test_values_lose_url_credentials_and_secret_assignments() -> None:
    redactor = Redactor()
    assert redactor.text("ssh://git@host/x, http://host/y, mailto:a@b.c") == "ssh://host/x, http://host/y, mailto:a@b.c"
    assert redactor.text("TOKEN=abc max_tokens=5 --password = p&x=1") == f"TOKEN={MASK} max_tokens=5 --password = {MASK}&x=1"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"train.py --api-key {SECRET} --lr 0.1", f"train.py --api-key {MASK} --lr 0.1"),
        (f"x --db.password '{SECRET} b' --openai-api-key {SECRET}", f"x --db.password {MASK} --openai-api-key {MASK}"),
        (f"x --apiKey\t{SECRET}", f"x --apiKey\t{MASK}"),
        # A next word starting with "-" is the next option; options that only contain a word stay.
        ("x --use-auth --verbose --tokenizer bert --author me --max-tokens 5", None),
        (f"x -p {SECRET} a--token b", None),
    ],
)
def test_a_secret_command_line_option_loses_its_value(text: str, masked: str | None) -> None:
    assert Redactor().text(text) == (text if masked is None else masked)


def test_redact_patterns_is_a_core_setting(tracelet_start: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACELET_REDACT_PATTERNS", "session_id, pin")
    run = tracelet_start(backends=["recording"])
    run.log_params({"session_id": "s-1", "api_key": "visible", "url": f"https://u:{SECRET}@h/x"})
    assert run.stop(timeout=10) is True
    recording = run.get_plugin("recording")
    assert isinstance(recording, RecordingBackend)
    # Only the configured words are masked; URL credentials are always stripped.
    assert recording.params == {"session_id": MASK, "api_key": "visible", "url": "https://h/x"}


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("http://user:p@ss@host:5000/api", "http://host:5000/api"),  # a password holding "@" goes whole
        (f"API request to https://bob:{SECRET}@h.example/api failed", "API request to https://h.example/api failed"),
        (
            f'[{{"name": "db", "password": "{SECRET}"}}, {{"token": 123, "max_tokens": 7}}]',
            f'[{{"name": "db", "password": "{MASK}"}}, {{"token": "{MASK}", "max_tokens": 7}}]',
        ),
        (f"[{{'api_key': '{SECRET}', 'x': 1}}]", f"[{{'api_key': '{MASK}', 'x': 1}}]"),
        (f"Authorization: Bearer {SECRET}", f"Authorization: {MASK}"),
        (
            f"curl -H 'Authorization: Basic dXNlcjpwYXNz' -d x=1 {SECRET[:0]}http://h",
            f"curl -H 'Authorization: {MASK}' -d x=1 http://h",
        ),
        (f"sent Bearer {SECRET} to the server", f"sent Bearer {MASK} to the server"),
        (
            "the bearer of news; Basic usage; author: bob, max_tokens: 5",
            "the bearer of news; Basic usage; author: bob, max_tokens: 5",
        ),
        (f"HF_TOKEN={SECRET}; auth: {SECRET}", f"HF_TOKEN={MASK}; auth: {MASK}"),
    ],
)
def test_scrub_masks_what_a_line_of_text_carries(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


_LOGGING_SCRIPT = f"""
import logging
from tracelet.log import get_logger

logging.basicConfig(format="%(levelname)s %(message)s")
log = get_logger()
url = "https://alice:p@ss-{SECRET}@mlflow.example.com"
try:
    raise ConnectionError(f"API request to {{url}}/api failed; Authorization: Bearer {SECRET}")
except ConnectionError as error:
    log.warning(f"backend hook failed at {{url}}", url=url, error=str(error), exc_info=error)
log.warning("command line", argv=["train.py", "--api-key={SECRET}"])
"""


def test_every_log_line_is_scrubbed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOGGING_SCRIPT], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True
    )
    assert SECRET not in done.stderr and "alice" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "WARNING backend hook failed at https://mlflow.example.com url='https://mlflow.example.com' "
        f"error='API request to https://mlflow.example.com/api failed; Authorization: {MASK}'"
    )
    assert "Traceback (most recent call last):" in lines
    assert f"ConnectionError: API request to https://mlflow.example.com/api failed; Authorization: {MASK}" in lines
    assert lines[-1] == f"WARNING command line argv=['train.py', '--api-key={MASK}']"
