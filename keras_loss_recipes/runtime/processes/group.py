"""Who the processes of a group are: the group, read from the environment, and the others' scratch run directories."""
from __future__ import annotations

import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.processes.hard_exit import remove_on_exit

COUNT_VAR, RANK_VAR, COORDINATOR_VAR = "RECIPES_PROCESSES", "RECIPES_PROCESS_ID", "RECIPES_COORDINATOR"
PORT_VAR = "RECIPES_COORDINATOR_PORT"  # overrides the port derived from the SLURM job
RUN_DIR_FILE_VAR = "RECIPES_RUN_DIR_FILE"  # where process 0 tells the launcher its run directory
SCRATCH_VAR = "RECIPES_SCRATCH"  # where the other processes make their scratch run directories (the launcher's)
LOOPBACK = "127.0.0.1"
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
    remove_on_exit(scratch)
    return [a for a in argv if not a.lstrip("+").startswith("hydra.run.dir=")] + [f"hydra.run.dir={scratch}"]


def check_config(cfg, group: Group) -> None:
    backend, distribution = cfg.backend, cfg.trainer.distribution
    if backend != "jax" or distribution != "data_parallel":
        raise UserError(f"backend={backend} trainer.distribution={distribution}: {group.count} processes "
                        f"({group.source}) train one model only with backend=jax trainer.distribution=data_parallel")
    if cfg.trainer.devices is not None:
        raise UserError(f"trainer.devices={cfg.trainer.devices}: with {group.count} processes every device of "
                        "every process trains; leave trainer.devices=null")


def announce_run_dir(run_dir: Path) -> None:
    """Process 0: tell the launcher (if any) its run directory, for it to record a failure there."""
    if os.environ.get(RUN_DIR_FILE_VAR):
        Path(os.environ[RUN_DIR_FILE_VAR]).write_text(str(Path(run_dir).resolve()))
