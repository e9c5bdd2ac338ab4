"""A tiny 'framework' for the patching tests: a writer with a method worth capturing."""

from __future__ import annotations


class Writer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def write(self, name: str, value: float, step: int) -> int:
        if step < 0:
            raise ValueError(f"toylib: negative step {step}")
        self.rows.append((name, value, step))
        return len(self.rows)
