"""How the end of the process reaches the active run: interpreter exit, SIGTERM, an uncaught exception, fork.

- At exit, the active run stops as ``FINISHED`` (delivering what is queued, by its deadline).
- SIGTERM (what schedulers send before preemption) stops it as ``KILLED`` within
  ``sigterm_grace`` seconds, then the previous handler runs; with the default
  handler the process dies by SIGTERM as it would have.
- An uncaught exception stops it as ``FAILED`` (``KILLED`` for Ctrl-C) after
  the previous ``sys.excepthook`` has printed it.
- In a forked child (a DataLoader worker) the inherited run becomes inert, and
  the child's SIGTERM handler is the one it had before Tracelet.

Handlers are installed by ``tracelet.start()``, chained to what was there, once.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracelet.records import RunStatus

if TYPE_CHECKING:
    from tracelet.run import Run

__all__ = ["block_process_signals", "install_signal_handlers", "register_exit_handler", "stop_run_at_exit_first"]

_exit_handler_registered = False
_previous_sigterm: Any = None
_sigterm_grace = 10.0
_previous_excepthook: Any = None


def block_process_signals() -> None:
    """Called first on each of Tracelet's own threads: SIGTERM and SIGINT are then delivered to another thread.

    The kernel hands a process-directed signal to any thread that does not
    block it. Python runs handlers on the main thread only, and only once that
    thread runs bytecode again: a signal that lands on one of our threads while
    the main thread sleeps in a long system call (``time.sleep``, a blocking
    read) would wait until that call returns. Blocked here, it interrupts the
    main thread at once.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


_first_at_exit: set[str] = set()


def stop_run_at_exit_first(plugin: str, is_ours: Callable[[str], bool]) -> None:
    """Stop the process's run at exit before every atexit handler registered so far (``atexit`` runs them last in,
    first out), if ``is_ours(run_id)`` holds for the run active on the exiting thread or one of its parents.

    For a backend whose library registers an atexit handler of its own when its run starts (W&B's service
    teardown, ClearML's task close): core's exit handler, registered at ``start()``, would run after it and
    find the library gone. Call it after the library's run started; the handler is registered once per
    ``plugin``. The top run is stopped as ``FINISHED``, which ends its children too.
    """
    if plugin in _first_at_exit:
        return
    _first_at_exit.add(plugin)

    def stop() -> None:
        from tracelet.api import active_run  # this thread's run, a child included (imported late: no cycle)

        run = active_run()
        if run is None:
            return
        ours = is_ours(run.id)
        while run.parent is not None:  # a child run active on this thread: the top run's stop() ends it too
            run = run.parent
            ours = ours or is_ours(run.id)
        if ours:
            run.stop(RunStatus.FINISHED)

    atexit.register(stop)


def _no_run() -> Run | None:
    return None


_active: Callable[[], Run | None] = _no_run
"""Returns the active run; set by :func:`register_exit_handler` (this module does not import the API)."""


def register_exit_handler(active_run: Callable[[], Run | None]) -> None:
    """Stop the active run (``active_run()``) at interpreter exit, on SIGTERM, an uncaught exception; registered once."""
    global _exit_handler_registered, _active
    _active = active_run
    if not _exit_handler_registered:
        atexit.register(_stop_at_exit)
        _exit_handler_registered = True


def _stop_at_exit() -> None:
    run = _active()
    if run is not None:
        run.stop(RunStatus.FINISHED)


def install_signal_handlers(grace: float) -> None:
    """SIGTERM handler and excepthook, chained to the previous ones; main thread only (a Python rule for signals)."""
    global _previous_sigterm, _sigterm_grace, _previous_excepthook
    _sigterm_grace = grace
    if sys.excepthook is not _excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    """Deliver within the grace period, spool the rest, mark the run KILLED, then terminate as before."""
    run = _active()
    if run is not None:
        run.stop(RunStatus.KILLED, timeout=_sigterm_grace)
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL (or a handler set from C): die by the signal, as before
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
    """An uncaught exception ends the active run as FAILED (KILLED for Ctrl-C) in every backend."""
    (_previous_excepthook or sys.__excepthook__)(kind, error, traceback)
    run = _active()
    if run is not None:
        run.stop(RunStatus.KILLED if issubclass(kind, KeyboardInterrupt) else RunStatus.FAILED)


def _after_fork_in_child() -> None:
    """A forked child must not use the parent's threads, locks or spool files, nor save its run at SIGTERM."""
    run = _active()
    if run is not None:
        run._make_inert(inherited=True)
    # multiprocessing's Pool.terminate() sends SIGTERM to its workers: they end exactly as without Tracelet.
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        # ValueError: forked from a thread other than the main one, where Python allows no handler change.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _previous_sigterm if _previous_sigterm is not None else signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
