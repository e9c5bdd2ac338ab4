"""argparse capture with real parsers: params ``args.<dest>``, the command line as a tag, failures untouched."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable

import pytest
from argparse_scripts import RECORDED, recorded

from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_argparse.patch import PARSE_METHODS

Start = Callable[..., Run]
RunScript = Callable[..., subprocess.CompletedProcess[str]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--name", default=None)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--layers", type=int, nargs="+", default=[64, 64])
    return parser


def _stopped(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert run.stop(timeout=30)
    assert isinstance(backend, RecordingBackend)
    return backend


def test_defaults_and_command_line_values_become_params(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"])
    namespace = _parser().parse_args(["--lr", "0.5", "--amp", "--layers", "8", "16", "32"])
    assert namespace == argparse.Namespace(lr=0.5, epochs=10, name=None, amp=True, layers=[8, 16, 32])
    backend = _stopped(run)
    assert backend.params == {
        "args.lr": 0.5,
        "args.epochs": 10,
        "args.name": None,
        "args.amp": True,
        "args.layers": "[8, 16, 32]",
    }
    assert backend.tags["args.command_line"] == "train.py --lr 0.5 --amp --layers 8 16 32"


def test_subcommands_are_captured_once_with_their_arguments(tracelet_start: Start) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--seed", type=int, default=0)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("data")
    evaluate = commands.add_parser("eval")
    evaluate.add_argument("--checkpoint", default="last.ckpt")
    run = tracelet_start(backends=["recording"])
    parser.parse_args(["--seed", "3", "train", "--lr", "0.25", "data.csv"])
    backend = _stopped(run)
    # The subcommand's parser is parsed inside its parent's call: one capture, one set of names.
    assert backend.params == {"args.seed": 3, "args.command": "train", "args.lr": 0.25, "args.data": "data.csv"}
    assert backend.tags == {"args.command_line": "tool --seed 3 train --lr 0.25 data.csv"}


def test_parse_known_args_captures_the_known_ones_and_the_whole_command_line(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"])
    _, extras = _parser().parse_known_args(["--epochs", "3", "--unknown", "x"])
    assert extras == ["--unknown", "x"]
    backend = _stopped(run)
    assert backend.params == {"args.lr": 0.1, "args.epochs": 3, "args.name": None, "args.amp": False, "args.layers": "[64, 64]"}
    assert backend.tags == {"args.command_line": "train.py --epochs 3 --unknown x"}


def test_intermixed_parse_is_captured_once(tracelet_start: Start) -> None:
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("files", nargs="*")
    parser.add_argument("--fast", action="store_true")
    run = tracelet_start(backends=["recording"])
    parser.parse_intermixed_args(["a", "--fast", "b"])
    backend = _stopped(run)
    assert backend.params == {"args.files": '["a", "b"]', "args.fast": True}
    assert [record.name for record in backend.records if record.name == "args.fast"] == ["args.fast"]


def test_several_parses_each_keep_their_values(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"])
    parser = _parser()
    parser.parse_args(["--lr", "0.5"])
    parser.parse_args(["--lr", "0.5"])  # the same values again: nothing new
    parser.parse_args(["--lr", "0.7"])
    other = argparse.ArgumentParser(prog="eval.py")
    other.add_argument("--split", default="test")
    other.parse_args([])
    backend = _stopped(run)
    assert backend.params == {
        **{f"args.{k}": v for k, v in {"lr": 0.5, "epochs": 10, "name": None, "amp": False, "layers": "[64, 64]"}.items()},
        **{f"args.2.{k}": v for k, v in {"lr": 0.7, "epochs": 10, "name": None, "amp": False, "layers": "[64, 64]"}.items()},
        "args.3.split": "test",
    }
    assert backend.tags == {
        "args.command_line": "train.py --lr 0.5",
        "args.2.command_line": "train.py --lr 0.7",
        "args.3.command_line": "eval.py",
    }
    assert len([record for record in backend.records if getattr(record, "name", "") == "args.lr"]) == 1


def test_secret_arguments_are_masked_in_params_and_command_line(tracelet_start: Start) -> None:
    parser = _parser()
    parser.add_argument("--api-key")
    parser.add_argument("--db-password")
    run = tracelet_start(backends=["recording"])
    parser.parse_args(["--api-key", "sk-live-123", "--db-password=hunter2", "--name", "x"])
    backend = _stopped(run)
    assert backend.params["args.api_key"] == "***"
    assert backend.params["args.db_password"] == "***"
    assert backend.params["args.name"] == "x"
    assert backend.tags["args.command_line"] == "train.py --api-key *** --db-password=*** --name x"
    assert "sk-live-123" not in repr(backend.records) and "hunter2" not in repr(backend.records)


def test_prefix_and_command_line_settings(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], config={"argparse": {"prefix": "cli", "command_line": False}})
    _parser().parse_args(["--epochs", "2"])
    backend = _stopped(run)
    assert backend.params["cli.epochs"] == 2
    assert backend.tags == {}


def test_parsers_of_skipped_modules_are_not_captured(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], config={"argparse": {"skip_modules": [__name__]}})
    _parser().parse_args([])
    backend = _stopped(run)
    assert backend.params == {}


def test_the_originals_are_restored_identity_equal(tracelet_start: Start) -> None:
    originals = {name: vars(argparse.ArgumentParser)[name] for name in PARSE_METHODS}
    run = tracelet_start(backends=["recording"])
    assert all(vars(argparse.ArgumentParser)[name] is not originals[name] for name in PARSE_METHODS)
    _stopped(run)
    assert {name: vars(argparse.ArgumentParser)[name] for name in PARSE_METHODS} == originals
    assert all(vars(argparse.ArgumentParser)[name] is originals[name] for name in PARSE_METHODS)
    run = tracelet_start(backends=["recording"])  # a second run patches again, with no stacked wrapper
    _stopped(run)
    assert all(vars(argparse.ArgumentParser)[name] is originals[name] for name in PARSE_METHODS)


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_capture_error_raises_in_strict_mode(tracelet_start: Start) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--value", type=lambda _: _Unprintable())
    tracelet_start(backends=["recording"])
    with pytest.raises(RuntimeError, match="no repr"):
        parser.parse_args(["--value", "x"])


# --- subprocesses: exits, output, namespaces parsed before start -----------------------------

PARSER = """
import argparse, sys
import tracelet
parser = argparse.ArgumentParser(prog="train.py", description="Train a model.")
parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
parser.add_argument("--epochs", type=int, required=True)
commands = parser.add_subparsers(dest="command")
commands.add_parser("fit").add_argument("--fast", action="store_true")
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["fit", "--help"], ["--lr", "not-a-number", "--epochs", "1"], [], ["--epochs", "1", "--bogus"]],
    ids=["help", "subcommand-help", "bad-type", "missing-required", "unknown-argument"],
)
def test_failing_parses_and_help_exit_exactly_as_without_tracelet(run_script: RunScript, argv: list[str]) -> None:
    with_tracelet = run_script(
        PARSER
        + RECORDED
        + 'run = tracelet.start(backends=["recording"])\ntry:\n    parser.parse_args()\nfinally:\n    dump(run)\n',
        *argv,
    )
    without = run_script(PARSER + "parser.parse_args()\n", *argv)
    assert (with_tracelet.returncode, with_tracelet.stderr) == (without.returncode, without.stderr)
    assert with_tracelet.stdout.split("RECORDED")[0] == without.stdout
    assert with_tracelet.returncode in (0, 2)
    # SystemExit went through unchanged, and nothing of the failed parse was captured.
    assert recorded(with_tracelet.stdout) == {"params": {}, "tags": {}}


def test_namespaces_parsed_before_start_are_captured_at_start(run_script: RunScript) -> None:
    source = (
        PARSER
        + RECORDED
        + """
def main():
    args = parser.parse_args()
    run = tracelet.start(backends=["recording"])
    dump(run)

main()
"""
    )
    result = run_script(source, "--epochs", "4", "fit", "--fast")
    assert result.returncode == 0, result.stderr
    train = str(result.args[1])
    assert recorded(result.stdout) == {
        "params": {"args.lr": 0.1, "args.epochs": 4, "args.command": "fit", "args.fast": True},
        "tags": {"args.command_line": f"{train} --epochs 4 fit --fast"},
    }


def test_main_module_globals_are_captured_at_start(run_script: RunScript) -> None:
    source = PARSER + RECORDED + 'args = parser.parse_args()\nrun = tracelet.start(backends=["recording"])\ndump(run)\n'
    result = run_script(source, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert recorded(result.stdout)["params"] == {"args.lr": 0.1, "args.epochs": 2, "args.command": None}


def test_turned_off_by_a_setting(run_script: RunScript) -> None:
    source = PARSER + RECORDED + 'run = tracelet.start(backends=["recording"])\nparser.parse_args()\ndump(run)\n'
    result = run_script(source, "--epochs", "2", TRACELET_ARGPARSE_ENABLED="false")
    assert result.returncode == 0, result.stderr
    assert recorded(result.stdout) == {"params": {}, "tags": {}}
    assert (
        "argparse"
        not in run_script(
            source.replace("dump(run)", "print(run.info.plugins)"), "--epochs", "2", TRACELET_ARGPARSE_ENABLED="false"
        ).stdout
    )


def test_a_capture_error_is_logged_once_and_swallowed_outside_strict_mode(run_script: RunScript) -> None:
    source = (
        RECORDED
        + """
import argparse, tracelet
class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")
parser = argparse.ArgumentParser()
parser.add_argument("--value", type=lambda _: Unprintable())
run = tracelet.start(backends=["recording"])
for _ in range(3):
    args = parser.parse_args(["--value", "x"])
    assert type(args.value).__name__ == "Unprintable"
dump(run)
"""
    )
    result = run_script(source, TRACELET_STRICT="0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("capture failed") == 1, result.stderr
    assert "RuntimeError: no repr" in result.stderr
    assert recorded(result.stdout) == {"params": {}, "tags": {}}


def test_distinct_parses_are_bounded_by_max_parses(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], config={"argparse": {"max_parses": 3}})
    parser = _parser()
    for epochs in range(5):
        parser.parse_args(["--epochs", str(epochs)])
    backend = _stopped(run)
    assert {name: value for name, value in backend.params.items() if name.endswith(".epochs")} == {
        "args.epochs": 0,
        "args.2.epochs": 1,
        "args.3.epochs": 2,
    }
