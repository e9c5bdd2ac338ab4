"""Settings of the ``argparse`` plugin (keys of ``[tool.tracelet.argparse]``, ``TRACELET_ARGPARSE_*``)."""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_SKIP_MODULES", "PLUGIN_NAME", "ArgparseSettings"]

PLUGIN_NAME = "argparse"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.argparse]``, ``TRACELET_ARGPARSE_*``."""

DEFAULT_SKIP_MODULES: tuple[str, ...] = ("tracelet", "hydra", "jsonargparse")
"""Parsers these packages own or call are not captured: Tracelet's own CLI, Hydra's command line (the
hydra plugin captures the composed config instead), jsonargparse (LightningCLI; the lightning plugin
captures its config)."""


@attrs.frozen
class ArgparseSettings:
    """Configuration of the ``argparse`` plugin."""

    prefix: str = attrs.field(default="args", validator=attrs.validators.min_len(1))
    """Params are named ``<prefix>.<dest>``; the command line is the tag ``<prefix>.command_line``."""
    command_line: bool = True
    """Set the tag ``<prefix>.command_line``: the command line the parse read, shell-quoted."""
    existing: bool = True
    """At start, capture the ``argparse.Namespace`` objects parsed before ``tracelet.start()``: those held
    by the variables of the functions calling ``start()`` and by ``__main__``'s globals."""
    max_parses: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    """Capture at most this many distinct parses per run (a script parsing in a loop stays bounded)."""
    skip_modules: tuple[str, ...] = DEFAULT_SKIP_MODULES
    """Packages whose parsers (by the parser's class or by the module calling ``parse_*``) are not captured."""
