"""How several processes stop after the same step when one of them is preempted.

JAX's own preemption service is off in a group (jax_group.join): its C++ handler
takes SIGTERM from the run's Python handler (which then never runs) and knows no
other signal. Instead the run's handler (keras_loss_recipes/runtime/preemption.py)
announces the signal in the coordinator's key-value store, and every process,
the signalled one too, hears it in a thread of its own (`StopTogether`). That
thread then agrees with the others on the step to stop after: it holds this
process's main thread at its next step, tells the store the last step this
process finished (the train function's calls), waits for every process's, and
sets the step after the largest as the one to stop after. No process can be past
it (each is held until the agreement is made), and each gets there, the fastest
with one more step. Until a notice comes, the main thread's check at each step is
a lock taken and two integers compared: nothing waits for the device or the network.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

from keras_loss_recipes.runtime import private_api

log = logging.getLogger(__name__)

NOTICE_KEY = "recipes/preemption"  # its value: the signal's name
STEP_KEY = "recipes/preemption_step/{rank}"  # each process's last finished step when the notice came
AGREE_TIMEOUT_S = 60  # a peer that never answers (it died): no agreement, the collectives fail instead
POLL_MS = 1000  # the watching thread's wait for the notice, between looks at whether the run has ended


class StopTogether:
    """One process's part: `announce(signum)` from the preemption handler, `step_done()` from the train
    function's wrapper after each call (True at the agreed step), `on_notice(signum)` when the group heard
    of a preemption (this process's own signal or another's), before the agreed step is known."""

    def __init__(self, rank: int, count: int, on_notice: Callable[[int], None], client=None):
        self.rank, self.count = rank, count
        self.on_notice = on_notice
        self.client = client or private_api.jax_coordinator_client()
        self.calls = 0  # the train function's calls so far, in this process's life
        self.stop_after: int | None = None  # the agreed call, once agreed
        self.signum: int | None = None
        self._lock = threading.Lock()  # held by the agreement: the main thread waits at its next step
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="preemption-notice", daemon=True)
        self._thread.start()

    def announce(self, signum: int) -> None:
        """This process got a preemption signal: tell the group (a second notice, from another process, is
        the same preemption)."""
        try:
            self.client.key_value_set(NOTICE_KEY, signal.Signals(signum).name)
        except Exception as err:  # already there: another process was signalled first
            log.debug("preemption notice not set (%s): one is out already", err)

    def step_done(self) -> bool:
        """After each call of the train function: True once this is the call every process stops after."""
        with self._lock:
            self.calls += 1
            return self.calls == self.stop_after

    def end(self) -> None:
        self._ended.set()

    def _watch(self) -> None:
        while not self._ended.is_set():
            try:
                name = self.client.blocking_key_value_get(NOTICE_KEY, POLL_MS)
            except Exception:
                self._ended.wait(0.05)  # no notice yet; or the runtime is going, and the process with it
                continue
            self._agree(getattr(signal, name))
            return

    def _agree(self, signum: int) -> None:
        with self._lock:
            self.signum = signum
            self.client.key_value_set(STEP_KEY.format(rank=self.rank), str(self.calls))
            self.on_notice(signum)  # after the step is told: a held test run may go on now
            try:
                steps = [int(self.client.blocking_key_value_get(STEP_KEY.format(rank=rank), AGREE_TIMEOUT_S * 1000))
                         for rank in range(self.count)]
            except Exception as err:
                log.error("the processes could not agree on a step to stop after (%s): a peer is gone", err)
                return
            self.stop_after = max(steps) + 1
            log.warning("%s: every process stops after call %d of the train function (the steps finished were %s)",
                        signal.Signals(signum).name, self.stop_after, steps)
