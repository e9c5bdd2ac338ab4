"""What the ``tracelet`` command shows on a terminal: tables that fit its width, and progress.

Tables (:func:`print_table`) are as wide as the terminal (``COLUMNS``, else the
terminal's size); a long cell is wrapped inside its column. Output that goes
to a pipe or a file with no ``COLUMNS`` set is not a terminal: every cell is
printed whole, as with ``--wide``.

Progress (:class:`Progress`) is the one interface ``tracelet replay`` (and any
command that delivers spooled records) reports through: a bar per task on a
terminal, plain lines when the stream is a pipe or a file.

Rich draws the tables and bars when it is installed (``pip install
"tracelet-core[cli]"``); without it tables are printed whole and progress as
plain lines, on a terminal too. It is imported here, inside the functions
that draw, never at module level: ``tracelet.replay`` imports this module and
``tracelet.start()`` imports ``tracelet.replay``, and ``import tracelet`` must
not pay for a CLI library.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["PLAIN_INTERVAL", "Progress", "ProgressTask", "print_table", "terminal_width"]

PLAIN_INTERVAL = 5.0
"""Seconds between two plain progress lines of one task (a pipe, a CI log): the last line is always printed."""


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def terminal_width(stream: TextIO) -> int | None:
    """The width tables must fit: ``COLUMNS`` when set, the terminal's width for a terminal, else ``None`` (no limit)."""
    variable = os.environ.get("COLUMNS", "")
    if variable.isdigit() and int(variable) > 0:
        return int(variable)
    if not _is_terminal(stream):
        return None
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80
    return columns if columns > 0 else 80  # a terminal whose size nobody set (a fresh pseudo-terminal) says 0


def have_rich() -> bool:
    """Whether rich (the ``cli`` extra) is installed: fitted tables and bars, else whole rows and plain lines."""
    from importlib.util import find_spec

    return find_spec("rich") is not None


def _console(stream: TextIO, width: int | None) -> Console:
    from rich.console import Console

    terminal = _is_terminal(stream)
    height = None
    if terminal:
        try:
            height = os.get_terminal_size(stream.fileno()).lines or 25  # 0: unset (see terminal_width)
        except (AttributeError, ValueError, OSError):
            height = 25
    return Console(
        file=stream,
        width=width,
        height=height,
        force_terminal=terminal,
        color_system="auto" if terminal else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    stream: TextIO | None = None,
    wide: bool = False,
    indent: int = 0,
) -> None:
    """Print ``rows`` under ``header``, columns separated by two spaces, each line after ``indent`` spaces.

    Fits :func:`terminal_width`: the widest columns are narrowed and their
    cells wrapped (every character is kept, on more lines). ``wide=True``, no
    width to fit, or no rich, prints each row on one line, whatever its length.
    """
    stream = sys.stdout if stream is None else stream
    width = None if wide or not have_rich() else terminal_width(stream)
    margin = " " * indent
    if width is None:
        all_rows = [list(header), *[list(row) for row in rows]]
        widths = [max(len(row[column]) for row in all_rows) for column in range(len(header))]
        for row in all_rows:
            print(margin + "  ".join(cell.ljust(size) for cell, size in zip(row, widths, strict=True)).rstrip(), file=stream)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, show_edge=False, header_style="", expand=False)
    for index, name in enumerate(header):
        # The first column names the row (a key, a plugin): kept whole while the others wrap.
        table.add_column(name, overflow="fold", no_wrap=index == 0)
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    console = _console(stream, max(20, width - indent))
    with console.capture() as captured:  # plain text: lines without the padding rich leaves at their ends
        console.print(table)
    for line in captured.get().splitlines():
        print((margin + line).rstrip(), file=stream)


class ProgressTask:
    """The progress of one task (one spool being delivered): see :class:`Progress`."""

    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self._progress = progress
        self.label = label
        self.total = total
        self.done = 0
        self.count = 0
        self._last_time = time.monotonic()  # the first plain line comes after an interval, or at the end
        self._last_line: str | None = None
        self._task_id: Any = None

    @property
    def percent(self) -> int:
        """Done of total, in whole percent (100 when there was nothing to do)."""
        return 100 if self.total <= 0 else min(100, 100 * self.done // self.total)

    def advance(self, amount: int, count: int) -> None:
        """``amount`` more units of ``total`` are done; ``count`` items (records) done so far in all."""
        self.done += max(0, amount)
        self.count = count
        self._progress._update(self, final=False)

    def finish(self) -> None:
        """The task ended (done or stopped): its bar stays as it is; piped, its last line is printed."""
        self._progress._update(self, final=True)

    def line(self) -> str:
        """The plain line for this task: ``recording run-3: 40% 200 records``."""
        return f"{self.label}: {self.percent}% {self.count} {self._progress.unit}"


class Progress:
    """Progress of a command's tasks on ``stream``: one bar per task on a terminal, plain lines otherwise.

    The interface commands that deliver records report through::

        with Progress(sys.stderr, unit="records") as progress:
            task = progress.task("mlflow run-3", total=bytes_to_send)
            task.advance(bytes_sent_now, records_sent_so_far)
            task.finish()

    On a terminal (with rich installed) each task is a bar (percent, count, time left) redrawn in
    place. On a pipe or a file a task prints a line ``<label>: <percent>%
    <count> <unit>`` at most every ``interval`` seconds and always when it
    finishes, so a log gets the outcome without a line per batch.
    ``stream=None`` shows nothing.
    """

    def __init__(self, stream: TextIO | None, *, unit: str = "records", interval: float = PLAIN_INTERVAL) -> None:
        self.stream = stream
        self.unit = unit
        self.interval = interval
        self._bars: Any = None
        if stream is not None and _is_terminal(stream) and have_rich():
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bars = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[count]} " + unit),
                TimeRemainingColumn(),
                console=_console(stream, terminal_width(stream)),
                transient=False,
            )
            self._bars.start()

    def task(self, label: str, total: int) -> ProgressTask:
        """A new task of ``total`` units (bytes to send), shown under ``label``."""
        task = ProgressTask(self, label, total)
        if self._bars is not None:
            task._task_id = self._bars.add_task(label, total=max(total, 1), count=0)
        return task

    def _update(self, task: ProgressTask, *, final: bool) -> None:
        if self.stream is None:
            return
        if self._bars is not None:
            completed = task.done if task.total > 0 else 1
            self._bars.update(task._task_id, completed=completed, count=task.count, refresh=final)
            return
        now, line = time.monotonic(), task.line()
        if (final or now - task._last_time >= self.interval) and line != task._last_line:
            task._last_time, task._last_line = now, line
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Stop redrawing the bars (they stay on the terminal)."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
