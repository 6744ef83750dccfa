"""How several processes meet on JAX: its distributed runtime, where its collectives listen, its key-value store.

It reaches into JAX's private modules (jax._src, through keras_loss_recipes/runtime/private_api.py): JAX
offers no public way to give gloo's collectives a host or to use the coordinator's store.
"""
from __future__ import annotations

import logging
import sys

from keras_loss_recipes.runtime import private_api
from keras_loss_recipes.runtime.processes.group import Group
from keras_loss_recipes.runtime.processes.watchdog import Watchdog

log = logging.getLogger(__name__)

# JAX's defaults are 100 s (heartbeat) and 300 s (shutdown barrier): a dead peer would hold the
# others for minutes. Within these, a peer that stops answering is declared dead.
HEARTBEAT_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 30
INIT_TIMEOUT_S = 90  # how long processes wait for each other to start


def join(group: Group, stall_timeout_s: float, watchdog: Watchdog) -> None:
    """Meet the other processes (before any JAX work), with `watchdog` started to watch the wait."""
    import jax

    _bind_collectives(group.bind_host)
    coordinator_bind = f"{group.bind_host}:{group.port}" if group.rank == 0 else None
    watchdog.start(stall_timeout_s, f"process {group.rank}")
    # JAX's preemption service would put a C++ handler of its own on SIGTERM in place of the run's, and knows no
    # other signal: the group stops together through the run's handler instead (stop_together.py).
    jax.config.update("jax_enable_preemption_service", False)
    jax.distributed.initialize(
        coordinator_address=group.coordinator, num_processes=group.count, process_id=group.rank,
        coordinator_bind_address=coordinator_bind, initialization_timeout=INIT_TIMEOUT_S,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S, shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
    )
    watchdog.tick()
    log.info("process %d of %d (%s): coordinator %s, listeners on %s", group.rank, group.count, group.source,
             group.coordinator, group.bind_host)


def joined() -> bool:
    """Whether this process has met its group (JAX's distributed runtime is up)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def _bind_collectives(host: str) -> None:
    """JAX's CPU client with gloo collectives listening on `host`.

    JAX makes gloo's collectives without a host, and gloo then listens on
    whatever this machine's name resolves to; make_gloo_tcp_collectives takes
    the host, so the CPU backend is registered anew with it (before any backend starts).
    """
    import jax

    if jax.config.jax_cpu_collectives_implementation not in (None, "gloo") or not (
            private_api.bind_gloo_collectives(host)):
        log.warning("gloo's collectives listen where JAX puts them (this JAX has no host setting for them)")


def tell_others(key: str, value: str) -> None:
    """Process 0: publish `value` under `key` in the coordinator's key-value store."""
    private_api.jax_coordinator_client().key_value_set(f"recipes/{key}", value)


def hear_from_process_0(key: str) -> str:
    """The others: wait (at most INIT_TIMEOUT_S) for what process 0 published under `key`."""
    return private_api.jax_coordinator_client().blocking_key_value_get(f"recipes/{key}", INIT_TIMEOUT_S * 1000)
