"""How a run ends on a signal: SIGINT, SIGTERM and SIGHUP all stop the time loop the same way.

Batch schedulers end a job with SIGTERM when its time is up, a closed terminal sends SIGHUP,
and a user presses Ctrl-C (SIGINT). Each becomes an exception raised in the main thread
(``KeyboardInterrupt`` for SIGINT, :class:`Terminated`, a ``KeyboardInterrupt`` too, for the
others), so the driver ends the run as ``interrupted`` and the store keeps every completed
output. The process then exits with ``128 + signal number`` (130, 143, 129).

Work that must not be cut in half (creating and renaming a store into place, writing a chunk
and its metadata, writing the final status) runs inside :func:`deferred`: a signal that
arrives there is held and raised when the block ends, and :func:`swallowed` drops it
instead (the final status write of a run that is ending anyway). Once one signal has been
raised, later ones are ignored until :func:`install` is called again: a second Ctrl-C 10 ms
after the first must not cut short the clean-up the first started (SIGKILL still ends the
process at once, leaving a stale lock that the next writer breaks).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "deferred", "exit_status", "ignore_from_now", "install", "swallowed"]

HANDLED = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C, exit with 128 + the signal's number."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"received {signal.Signals(signum).name}")


def exit_status(exc: BaseException) -> int:
    """The exit status of a process stopped by ``exc``: 128 + signal number (130 for Ctrl-C)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


_depth = 0
_pending: KeyboardInterrupt | None = None
_stopping = False  # a signal was raised already: the process is on its way out


def _exception(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handler(signum, frame) -> None:
    global _pending, _stopping
    if _stopping:
        return  # a second Ctrl-C must not cut short the clean-up of the first
    exc = _exception(signum)
    if _depth > 0:
        if _pending is None:  # the first signal decides how the run ends
            _pending = exc
        return
    _stopping = True
    raise exc


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to the handler (main thread only; a no-op elsewhere).

    Also undoes a shell's "ignore SIGINT" for background jobs, so Ctrl-C still reaches the
    time loop when a script started us with ``&``.
    """
    global _stopping, _pending
    try:
        signal.signal(HANDLED[0], _handler)
    except ValueError:  # not the main thread (asked of signal itself: no threading import)
        return
    _stopping, _pending = False, None
    for signum in HANDLED:
        signal.signal(signum, _handler)


def ignore_from_now() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP for the rest of the process: its outcome is decided
    and its exit status chosen (a late second Ctrl-C must not turn exit 130 into death by
    SIGINT while the interpreter shuts down)."""
    for signum in HANDLED:
        try:
            signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            return


def _release(raise_held: bool) -> None:
    """Leave a block that holds signals; at the outermost one, raise or drop the held one."""
    global _depth, _pending, _stopping
    _depth -= 1
    if _depth > 0 or _pending is None:
        return
    exc, _pending = _pending, None
    if raise_held:
        _stopping = True
        raise exc


@contextmanager
def _held(raise_at_end: bool) -> Iterator[None]:
    global _depth
    _depth += 1
    try:
        yield
    except BaseException:
        # the block's own exception ends what is going on anyway: it wins over a held signal
        _release(raise_held=False)
        raise
    _release(raise_held=raise_at_end)


def deferred():
    """Hold signals for the duration of the block; the first one held is raised at its end
    (unless the block raised an exception of its own, which then wins).

    Nested blocks raise only when the outermost one ends. Only effective where :func:`install`
    set the handler; elsewhere Python's default handlers act as usual.
    """
    return _held(raise_at_end=True)


def swallowed():
    """Hold signals for the duration of the block and drop them at its end (the run is
    ending already and its final status is being written)."""
    return _held(raise_at_end=False)
