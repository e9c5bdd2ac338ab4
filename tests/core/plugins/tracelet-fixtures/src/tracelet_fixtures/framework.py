"""A framework plugin that captures ``toylib.Writer.write`` calls as metrics."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import tracelet
from tracelet.patching import PatchSet, capture_errors


class ToyPatcher:
    def __init__(self, settings: None) -> None:
        self.patches = PatchSet()
        self.patch_calls = 0

    @tracelet.hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return ["tracelet_fixtures.toylib"]

    @tracelet.hookimpl
    def tracelet_patch(self, run: tracelet.Run, module: ModuleType) -> None:
        self.patch_calls += 1
        writer = module.Writer
        original = writer.write

        @functools.wraps(original)
        def write(self: Any, name: str, value: float, step: int) -> int:
            result = original(self, name, value, step)
            with capture_errors("fixture-framework", strict=run.strict):
                run.log_metric(f"toy/{name}", value, step)
            return result

        self.patches.replace(writer, "write", write)

    @tracelet.hookimpl
    def tracelet_unpatch(self) -> None:
        self.patches.restore()


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-framework", kind=tracelet.PluginKind.FRAMEWORK, factory=ToyPatcher, enabled_by_default=False
    )
