"""Ctrl-C and SIGTERM at the command line: the first one always stops the run, with the usual clean-up.

The handlers installed by :func:`handle_signals` record the signal and raise ``KeyboardInterrupt``. Python
drops an exception raised where it cannot propagate (a ``__del__``, an at-fork hook while a subprocess such
as ffmpeg starts), so the record stays: long loops call :func:`check` between units of work, which raises
``KeyboardInterrupt`` again once a stop was asked for. SIGTERM (what ``timeout``, schedulers and ``kill``
send) is treated like Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["handle_signals", "check", "requested", "exit_status"]

_STOP: list[int] = []  # the signals received while the handlers were installed, first first

_NAMES = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


def _handler(signum, frame) -> None:
    _STOP.append(signum)
    raise KeyboardInterrupt(_NAMES.get(signum, f"signal {signum}"))


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of a command (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def requested() -> int | None:
    """The first signal received (``signal.SIGINT`` / ``signal.SIGTERM``), or None."""
    return _STOP[0] if _STOP else None


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for (even when the first one was swallowed somewhere)."""
    if _STOP:
        raise KeyboardInterrupt(_NAMES.get(_STOP[0], f"signal {_STOP[0]}"))


def exit_status(signum: int | None) -> int:
    """The shell's status for a run stopped by ``signum``: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(signum or signal.SIGINT)


def message(signum: int | None) -> str:
    return _NAMES.get(signum or signal.SIGINT, f"signal {signum}")
