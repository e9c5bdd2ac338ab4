"""Configuration capture: what argparse and OmegaConf capture cost, against a baseline in the same run.

Run: ``python benchmarks/config_capture.py`` in an environment with tracelet-core,
tracelet-argparse and (for the OmegaConf part) tracelet-hydra installed, e.g.
``tox -e hydra --notest && .tox/hydra/bin/pip install plugins/tracelet-argparse``.
Prints a table; docs/plugins/argparse.md and hydra.md quote it.

Capture happens when a script parses its arguments or a Hydra job starts, once per
run, never per training step; these are its costs there (best of ``REPEATS`` rounds,
wall time per call, a run delivering to the in-memory recording backend):

1. ``parser.parse_args(argv)`` of a 20-argument parser with a subcommand, each call
   with different values (so every call is captured and logged: the worst case; 95
   calls, within the plugin's ``max_parses``),
   with the argparse plugin vs without a run (argparse as shipped).
2. The same parse repeated with the same values: what a later identical parse costs
   (compared and not logged again).
3. ``tracelet.log_params(cfg)`` of a Hydra-style ``DictConfig`` (30 values, 4
   interpolations, a missing value) vs ``log_params`` of the plain dict holding the
   same resolved values (what a user would otherwise pass).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import tracelet

REPEATS = 5
CALLS = 2_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py")
    for index in range(16):
        parser.add_argument(f"--option-{index}", type=float, default=float(index))
    parser.add_argument("--name", default="run")
    parser.add_argument("--amp", action="store_true")
    commands = parser.add_subparsers(dest="command")
    fit = commands.add_parser("fit")
    fit.add_argument("--epochs", type=int, default=10)
    return parser


def _best(function: Callable[[int], object], calls: int) -> float:
    """Best wall seconds per call over REPEATS rounds of ``calls`` calls."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function(calls)
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def _distinct_parses(parser: argparse.ArgumentParser) -> Callable[[int], object]:
    counter = iter(range(10**9))

    def parse(calls: int) -> None:
        for _ in range(calls):
            parser.parse_args(["--option-3", str(next(counter)), "--amp", "fit", "--epochs", "5"])

    return parse


def _same_parse(parser: argparse.ArgumentParser) -> Callable[[int], object]:
    def parse(calls: int) -> None:
        for _ in range(calls):
            parser.parse_args(["--option-3", "1.5", "--amp", "fit", "--epochs", "5"])

    return parse


def _start(plugins: str) -> tracelet.Run:
    os.environ["TRACELET_PLUGINS"] = f"recording,{plugins}"
    os.environ["TRACELET_SPOOL_DIR"] = tempfile.mkdtemp(prefix="bench-config-")
    # The recording backend keeps every record in memory, like the fastest possible backend.
    return tracelet.start(backends=["recording"], project="bench")


def argparse_rows() -> list[tuple[str, float, float]]:
    parser = _parser()
    # 5 rounds of 19 new parses, after the repeated one: 96 captures, within the plugin's max_parses (100).
    base_same = _best(_same_parse(parser), CALLS)
    base_distinct = _best(_distinct_parses(parser), 19)
    run = _start("argparse")
    try:
        captured_same = _best(_same_parse(parser), CALLS)
        captured_distinct = _best(_distinct_parses(parser), 19)
    finally:
        run.stop(timeout=60)
    return [
        ("parse_args, new values each call (captured, logged)", base_distinct, captured_distinct),
        ("parse_args, the same values again (compared, not logged)", base_same, captured_same),
    ]


def omegaconf_rows() -> list[tuple[str, float, float]]:
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {
            "seed": 0,
            "run_name": "${model.name}-${seed}",
            "model": {"name": "mlp", "layers": [64, 32], "width": "${model.layers[0]}", "dropout": 0.1},
            "optimizer": {"name": "adamw", "lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.01},
            "data": {"path": "???", "batch_size": 64, "workers": 4, "augment": {"flip": True, "crop": 32}},
            "trainer": {f"option_{index}": index for index in range(14)},
            "eval_every": "${trainer.option_3}",
        }
    )
    plain = OmegaConf.to_container(config, resolve=True, throw_on_missing=False)
    assert isinstance(plain, dict)
    run = _start("hydra")
    try:
        baseline = _best(lambda calls: [tracelet.log_params(plain) for _ in range(calls)], CALLS // 4)
        converted = _best(lambda calls: [tracelet.log_params(config) for _ in range(calls)], CALLS // 4)
    finally:
        run.stop(timeout=60)
    return [("log_params(DictConfig) vs the same values as a dict", baseline, converted)]


def main() -> None:
    rows = argparse_rows()
    try:
        rows += omegaconf_rows()
    except ImportError as error:  # omegaconf or tracelet-hydra not installed here
        print(f"(OmegaConf part skipped: {error})")
    print(f"{'measurement':60} {'baseline':>11} {'captured':>11} {'ratio':>7}")
    for name, baseline, captured in rows:
        print(f"{name:60} {baseline * 1e6:9.1f}µs {captured * 1e6:9.1f}µs {captured / baseline:6.2f}x")


if __name__ == "__main__":
    main()
