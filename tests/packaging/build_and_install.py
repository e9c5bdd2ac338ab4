"""Build every package's sdist and wheel, and install the wheels alone into a fresh virtual environment.

Usage: ``python build_and_install.py WORKDIR CONSTRAINTS PACKAGE_DIR...`` (what ``tox -e packaging`` runs).

``python -m build`` builds the sdist, then the wheel from that sdist, so a file
missing from the sdist shows up as a broken wheel. The virtual environment at
``WORKDIR/venv`` has no access to the source folders or to the tox
environment's packages: only the wheels in ``WORKDIR/dist`` and their
dependencies from the index, pinned by ``CONSTRAINTS``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True)


def main(workdir: Path, constraints: Path, package_dirs: list[Path]) -> None:
    dist = workdir / "dist"
    shutil.rmtree(workdir, ignore_errors=True)
    for package_dir in package_dirs:
        # No isolation: hatchling comes from this tox environment, which saves a venv per package.
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, package_dir)
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != len(package_dirs) or len(sdists) != len(package_dirs):
        raise SystemExit(f"expected a wheel and an sdist per package, got {[p.name for p in wheels + sdists]}")
    environment = workdir / "venv"
    venv.create(environment, with_pip=True, clear=True)
    python = environment / "bin" / "python"
    # The wheels are named as files, so pip installs exactly these builds (never an index's tracelet-*).
    # --no-compile: byte-compiling torch, Lightning and mlflow would be most of the time, and proves nothing.
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", "-c", constraints, *wheels)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), [Path(argument) for argument in sys.argv[3:]])
