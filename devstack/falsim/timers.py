"""One timer thread for everything the simulator does later (completions, webhook retries)."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger("falsim")
# The longest single wait: the loop wakes and looks again, so a timer due in a century (or at a
# time threading's wait cannot take) only costs a wake-up an hour.
_MAX_WAIT_S = 3600.0


class Scheduler:
    """Runs callbacks at wall-clock times on one daemon thread; a failing callback is logged, never fatal."""

    def __init__(self, name: str = "falsim-timers") -> None:
        self._name = name
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drop every pending callback and end the thread (a callback running now finishes first)."""
        self._stopping.set()
        with self._cond:
            self._timers.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def schedule(self, due: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at ``due`` (a ``time.time()`` value); ignored once stopping, or when ``due``
        is no time at all (NaN, infinite: logged)."""
        if not math.isfinite(due):
            log.error("falsim timer dropped: due at %r", due)
            return
        with self._cond:
            if self._stopping.is_set():
                return
            heapq.heappush(self._timers, (due, next(self._order), fn))
            self._cond.notify()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                while not self._stopping.is_set():
                    now = time.time()
                    if self._timers and self._timers[0][0] <= now:
                        break
                    timeout = (self._timers[0][0] - now) if self._timers else None
                    self._cond.wait(timeout if timeout is None else min(_MAX_WAIT_S, max(0.001, timeout)))
                if self._stopping.is_set():
                    return
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:  # a broken callback must not kill the timer thread
                log.exception("falsim timer callback failed")
