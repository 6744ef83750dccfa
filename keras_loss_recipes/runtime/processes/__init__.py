"""Several processes training one model on JAX: who they are, how they meet, how they stop.

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
others; a peer that stalls with its heartbeats going on is caught by the
recipe's watchdog, which ends the process after trainer.stall_timeout_s seconds
without a step, an epoch or a phase done. A preemption signal to any one of them
stops every process after the same step (stop_together).

One module per concern; this package names what its users need:

    group        who they are: the group, read from the environment; the others' scratch run directories
    jax_group    how they meet: JAX's distributed runtime, where its collectives listen, its key-value store
    checksums    whether they ended with the same weights
    watchdog     the stall watchdog, an object the recipe owns
    stop_together  a preemption of one: every process stops after the same step
    hard_exit    out at once: JAX's exit barrier would wait for peers that may be gone
"""
from keras_loss_recipes.runtime.processes.checksums import weights_checksum, weights_match
from keras_loss_recipes.runtime.processes.group import (
    COORDINATOR_VAR, COUNT_VAR, LOOPBACK, PORT_VAR, RANK_VAR, RUN_DIR_FILE_VAR, SCRATCH_VAR, Group,
    announce_run_dir, check_config, current, first_host, from_environment, slurm_port, worker_argv,
)
from keras_loss_recipes.runtime.processes.hard_exit import exit_now
from keras_loss_recipes.runtime.processes.jax_group import (
    HEARTBEAT_TIMEOUT_S, INIT_TIMEOUT_S, SHUTDOWN_TIMEOUT_S, hear_from_process_0, join, joined, tell_others,
)
from keras_loss_recipes.runtime.processes.stop_together import StopTogether
from keras_loss_recipes.runtime.processes.watchdog import STALL_TIMEOUT_S, Watchdog

__all__ = [
    "COORDINATOR_VAR", "COUNT_VAR", "HEARTBEAT_TIMEOUT_S", "INIT_TIMEOUT_S", "LOOPBACK", "PORT_VAR", "RANK_VAR",
    "RUN_DIR_FILE_VAR", "SCRATCH_VAR", "SHUTDOWN_TIMEOUT_S", "STALL_TIMEOUT_S", "Group", "StopTogether", "Watchdog",
    "announce_run_dir", "check_config", "current", "exit_now", "first_host", "from_environment",
    "hear_from_process_0", "join", "joined", "slurm_port", "tell_others", "weights_checksum", "weights_match",
    "worker_argv",
]
