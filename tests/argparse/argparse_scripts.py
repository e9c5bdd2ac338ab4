"""What the subprocess scripts of these tests share: printing what the recording backend received."""

from __future__ import annotations

import json
from typing import Any

RECORDED = """
import json
def dump(run):
    backend = run.get_plugin("recording")
    assert run.stop(timeout=30)
    print("RECORDED" + json.dumps({"params": backend.params, "tags": backend.tags}))
"""
"""Script prelude: ``dump(run)`` stops the run and prints what the recording backend received."""


def recorded(output: str) -> dict[str, Any]:
    """What a script's ``dump(run)`` printed."""
    line = next(line for line in output.splitlines() if line.startswith("RECORDED"))
    result: dict[str, Any] = json.loads(line.removeprefix("RECORDED"))
    return result
