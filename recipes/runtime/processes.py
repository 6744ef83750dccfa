"""Several processes training one model on JAX: who they are, how they meet, how a fault ends them.

A group of processes is described by the environment, read once per process:

    launched by scripts/launch_processes.py    RECIPES_PROCESSES (how many), RECIPES_PROCESS_ID (this one's
                                               rank), RECIPES_COORDINATOR (127.0.0.1:PORT, process 0's)
    started by SLURM's srun (-n N, N > 1)      SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST
                                               (process 0 runs on its first host), SLURMD_NODENAME; the
                                               port from SLURM_JOB_ID and SLURM_STEP_ID, or
                                               RECIPES_COORDINATOR_PORT

Every process trains with backend=jax and trainer.distribution=data_parallel
(anything else is a one-line error). Listeners bind where they must and no wider:
the JAX coordinator (process 0) and every process's gloo collectives to 127.0.0.1
for a local launch, to the address of the node's SLURM name on a cluster.

Only process 0 writes the run directory. The others train in a scratch run
directory (removed when they exit) that starts as a copy of process 0's backup
and history, so a resumed run resumes everywhere at the same epoch.

A fault ends every process: a peer that dies breaks the collectives at once,
and the process then exits at once (not after JAX's shutdown barrier); a peer
that stops sending JAX's heartbeats for HEARTBEAT_TIMEOUT_S makes JAX end the
others; a peer that stalls with its heartbeats going on is caught by a watchdog
that ends the process after trainer.stall_timeout_s seconds without a step, an
epoch or a phase done.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recipes.runtime.errors import UserError

log = logging.getLogger(__name__)

COUNT_VAR, RANK_VAR, COORDINATOR_VAR = "RECIPES_PROCESSES", "RECIPES_PROCESS_ID", "RECIPES_COORDINATOR"
PORT_VAR = "RECIPES_COORDINATOR_PORT"  # overrides the port derived from the SLURM job
RUN_DIR_FILE_VAR = "RECIPES_RUN_DIR_FILE"  # where process 0 tells the launcher its run directory
SCRATCH_VAR = "RECIPES_SCRATCH"  # where the other processes make their scratch run directories (the launcher's)
LOOPBACK = "127.0.0.1"
# JAX's defaults are 100 s (heartbeat) and 300 s (shutdown barrier): a dead peer would hold the
# others for minutes. Within these, a peer that stops answering is declared dead.
HEARTBEAT_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 30
INIT_TIMEOUT_S = 90  # how long processes wait for each other to start
STALL_TIMEOUT_S = 60  # trainer.stall_timeout_s where a config has none
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000


@dataclass(frozen=True)
class Group:
    """This process's place in a group of `count` processes training one model."""

    count: int
    rank: int
    coordinator: str  # host:port of process 0's coordinator service
    bind_host: str  # the address this process's listeners bind to
    source: str  # "launcher" | "slurm"

    @property
    def port(self) -> str:
        return self.coordinator.rsplit(":", 1)[1]


def from_environment(env=None) -> Group | None:
    """The group this process belongs to, or None when it trains alone."""
    env = os.environ if env is None else env
    if COUNT_VAR in env:
        count, rank = _int_var(env, COUNT_VAR), _int_var(env, RANK_VAR)
        if count < 1 or not 0 <= rank < count:
            raise UserError(f"{RANK_VAR}={rank}, {COUNT_VAR}={count}: the rank is from 0 to {COUNT_VAR} - 1")
        coordinator = env.get(COORDINATOR_VAR, "")
        if not re.fullmatch(r"[^:\s]+:\d+", coordinator):
            raise UserError(f"{COORDINATOR_VAR}={coordinator!r}: HOST:PORT of process 0")
        return Group(count, rank, coordinator, LOOPBACK, "launcher") if count > 1 else None
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" not in env or "SLURM_STEP_ID" not in env or not tasks or int(tasks) < 2:
        return None
    host = first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
    port = int(env[PORT_VAR]) if env.get(PORT_VAR) else slurm_port(env.get("SLURM_JOB_ID", "0"),
                                                                    env.get("SLURM_STEP_ID", "0"))
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    return Group(int(tasks), int(env["SLURM_PROCID"]), f"{host}:{port}", _address_of(node), "slurm")


def _int_var(env, name: str) -> int:
    value = env.get(name, "")
    if not re.fullmatch(r"\d+", value):
        raise UserError(f"{name}={value!r}: a whole number")
    return int(value)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "n[03-05,9],m" -> "n03"."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise UserError(f"SLURM_STEP_NODELIST={nodelist!r}: no host in it")
    prefix, ranges = match.groups()
    return prefix + (re.split(r"[-,]", ranges)[0] if ranges else "")


def slurm_port(job_id: str, step_id: str) -> int:
    """A port every task of one srun step derives alike, different for the next step and job."""
    digits = re.sub(r"\D", "", f"{job_id}") or "0"
    return SLURM_PORT_BASE + (int(digits) * 16 + int(re.sub(r"\D", "", step_id) or 0)) % SLURM_PORT_SPAN


def _address_of(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise UserError(f"SLURMD_NODENAME={host}: the name does not resolve to an address") from None


_current: dict = {}
_scratch: list[str] = []  # this process's scratch run directory, removed when it exits


def current() -> Group | None:
    """This process's group (read from the environment once), or None."""
    if "group" not in _current:
        _current["group"] = from_environment()
    return _current["group"]


def worker_argv(argv: list[str]) -> list[str]:
    """train.py's overrides for this process: every process but 0 gets a scratch hydra.run.dir.

    Called before Hydra, so the other processes leave nothing (not even Hydra's
    .hydra/ and train.log) in the run directory of process 0.
    """
    group = current()
    if group is None:
        return argv
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise UserError(f"{group.count} processes train one model: no sweep (-m) with them")
    if group.rank == 0:
        return argv
    scratch = tempfile.mkdtemp(prefix=f"recipes-process{group.rank}-", dir=os.environ.get(SCRATCH_VAR) or None)
    _scratch.append(scratch)
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return [a for a in argv if not a.lstrip("+").startswith("hydra.run.dir=")] + [f"hydra.run.dir={scratch}"]


def check_config(cfg, group: Group) -> None:
    backend, distribution = cfg.get("backend", "tensorflow"), cfg.trainer.get("distribution", "none")
    if backend != "jax" or distribution != "data_parallel":
        raise UserError(f"backend={backend} trainer.distribution={distribution}: {group.count} processes "
                        f"({group.source}) train one model only with backend=jax trainer.distribution=data_parallel")
    if cfg.trainer.get("devices") is not None:
        raise UserError(f"trainer.devices={cfg.trainer.devices}: with {group.count} processes every device of "
                        "every process trains; leave trainer.devices=null")


def join(group: Group, stall_timeout_s: float) -> None:
    """Meet the other processes (before any JAX work); start the watchdog."""
    import jax

    _bind_collectives(group.bind_host)
    coordinator_bind = f"{group.bind_host}:{group.port}" if group.rank == 0 else None
    watchdog.start(stall_timeout_s, f"process {group.rank}")
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
    from jax._src import distributed, xla_bridge
    from jax._src.lib import _jax

    if jax.config.jax_cpu_collectives_implementation not in (None, "gloo") or not hasattr(
            _jax, "make_gloo_tcp_collectives"):
        log.warning("gloo's collectives listen where JAX puts them (this JAX has no host setting for them)")
        return

    def cpu_client():
        collectives = _jax.make_gloo_tcp_collectives(distributed_client=distributed.global_state.client,
                                                     hostname=host)
        return xla_bridge.make_cpu_client(collectives=collectives)

    xla_bridge.register_backend_factory("cpu", cpu_client, priority=0, fail_quietly=False)


def tell_others(key: str, value: str) -> None:
    """Process 0: publish `value` under `key` in the coordinator's key-value store."""
    from jax._src import distributed

    distributed.global_state.client.key_value_set(f"recipes/{key}", value)


def hear_from_process_0(key: str) -> str:
    """The others: wait (at most INIT_TIMEOUT_S) for what process 0 published under `key`."""
    from jax._src import distributed

    return distributed.global_state.client.blocking_key_value_get(f"recipes/{key}", INIT_TIMEOUT_S * 1000)


def announce_run_dir(run_dir: Path) -> None:
    """Process 0: tell the launcher (if any) its run directory, for it to record a failure there."""
    if os.environ.get(RUN_DIR_FILE_VAR):
        Path(os.environ[RUN_DIR_FILE_VAR]).write_text(str(Path(run_dir).resolve()))


def weights_checksum(model):
    """A SHA-256 of every weight's bytes, as 8 uint32 words."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint32).copy()


def weights_match(model) -> bool:
    """Whether every process holds the same weights as process 0 (their checksums, gathered)."""
    import numpy as np
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(weights_checksum(model)))
    return bool(np.all(gathered == gathered[0]))


def exit_now(code: int) -> None:
    """End this process at once: JAX's exit barrier would wait for peers that may be gone."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    for scratch in _scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    os._exit(code)


class Watchdog:
    """Ends this process when nothing moved on for `timeout` seconds (a stalled or dead peer).

    `tick()` marks progress (a step, an epoch, a phase); `on_stall(message)` is
    called once before the process exits (to record the failure).
    """

    def __init__(self):
        self.timeout = None
        self.name = "this process"
        self.last = time.monotonic()
        self.on_stall = None
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


watchdog = Watchdog()
