"""Check that ruff's banned-api list names every internal module of tracelet-core (run by ``tox -e lint``).

A plugin may import ``tracelet.plugin`` (and ``tracelet.testing`` in tests);
every other module of ``tracelet`` is internal and must be in
``[tool.ruff.lint.flake8-tidy-imports.banned-api]`` of the root
``pyproject.toml``, or TID251 would let plugins import a module added later.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: tracelet-core depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"tracelet", "tracelet.plugin", "tracelet.testing"}


def main() -> None:
    package = ROOT / "tracelet_core" / "src" / "tracelet"
    modules = {f"tracelet.{path.stem}" for path in package.glob("*.py")} | {
        f"tracelet.{path.parent.name}" for path in package.glob("*/__init__.py")
    }
    modules.discard("tracelet.__init__")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    banned = set(config["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"])
    missing = sorted(modules - PUBLIC - banned)
    stale = sorted(banned - modules)
    if missing or stale:
        sys.exit(
            "[tool.ruff.lint.flake8-tidy-imports.banned-api] in pyproject.toml is out of date: "
            + (f"add {', '.join(missing)} (internal modules plugins must not import)" if missing else "")
            + ("; " if missing and stale else "")
            + (f"remove {', '.join(stale)} (no such module)" if stale else "")
        )
    print(f"banned-api names all {len(banned)} internal modules of tracelet-core")


if __name__ == "__main__":
    main()
