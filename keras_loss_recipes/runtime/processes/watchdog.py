"""The stall watchdog: ends a process of a group when nothing moved on for too long (a stalled or dead peer).

The run owns one (keras_loss_recipes/lifecycle/run.py): it says what to record when the
watchdog fires, starts it when the group meets, and ticks it at every step,
epoch and phase. A process of a group runs one job (no sweeps), so once
started the watchdog watches until the process ends.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable

from keras_loss_recipes.runtime.processes.hard_exit import exit_now

log = logging.getLogger(__name__)
STALL_TIMEOUT_S = 60  # trainer.stall_timeout_s where a config has none


class Watchdog:
    """Ends this process when nothing moved on for `timeout` seconds, once started.

    `tick()` marks progress (a step, an epoch, a phase); `on_stall(message)` is
    called once before the process exits (to record the failure). Until `start`,
    ticks cost nothing and nothing watches.
    """

    def __init__(self, on_stall: Callable[[str], None] | None = None):
        self.on_stall = on_stall
        self.timeout = None
        self.name = "this process"
        self.last = time.monotonic()
        self._thread = None
        self._stopped = threading.Event()

    def start(self, timeout: float, name: str) -> None:
        self.timeout, self.name = float(timeout), name
        self.tick()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
            self._thread.start()

    def tick(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            idle = time.monotonic() - self.last
            if idle > self.timeout:
                message = (f"{self.name} made no progress for {idle:.0f} s (trainer.stall_timeout_s="
                           f"{self.timeout:g}): a peer process stalled or died; stopping")
                print(f"error: {message}", file=sys.stderr, flush=True)
                if self.on_stall is not None:
                    try:
                        self.on_stall(message)
                    except Exception:
                        log.exception("could not record the stall")
                exit_now(1)
