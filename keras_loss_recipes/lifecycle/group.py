"""A run trained by several processes (JAX): they meet, process 0 decides how the run directory starts, the
others follow it, and at the end they compare their weights (keras_loss_recipes/runtime/processes/)."""
from __future__ import annotations

import shutil
from pathlib import Path

from keras_loss_recipes.lifecycle.directory import RunAlreadyFinished
from keras_loss_recipes.runtime import preemption, processes
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HISTORY_FILE


def join(cfg, group: processes.Group, watchdog: processes.Watchdog) -> None:
    """Check that the config trains one model over the group (JAX, the backend the job started), then meet the
    other processes; from then on a preemption signal to any of them stops all after the same step."""
    processes.check_config(cfg, group)
    processes.join(group, cfg.trainer.stall_timeout_s, watchdog)
    preemption.stop_together(processes.StopTogether(group.rank, group.count, preemption.notice_from_group))


def prepare_with_others(group: processes.Group, run_dir: Path, prepare) -> str:
    """Process 0 prepares its run directory (`prepare(run_dir)` -> "fresh" | "resume") and says how; the others
    copy its backup and history into their scratch `run_dir` and follow."""
    if group.rank == 0:
        try:
            mode = prepare(run_dir)
        except RunAlreadyFinished as done:
            processes.tell_others("run_dir", f"finished\n{done.metrics.get('status')}")
            raise
        except BaseException as err:
            processes.tell_others("run_dir", f"error\n{err}")
            raise
        processes.tell_others("run_dir", f"{mode}\n{run_dir.resolve()}")
        processes.announce_run_dir(run_dir)
        return mode
    mode, detail = processes.hear_from_process_0("run_dir").split("\n", 1)
    if mode == "finished":
        raise RunAlreadyFinished(run_dir, {"status": detail})
    if mode == "error":
        raise UserError(f"process 0 stopped: {detail}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if mode == "resume":
        source = Path(detail)
        shutil.copytree(source / BACKUP_DIR, run_dir / BACKUP_DIR, dirs_exist_ok=True)
        if (source / HISTORY_FILE).exists():
            shutil.copy2(source / HISTORY_FILE, run_dir / HISTORY_FILE)
    return mode


def compare_weights(model, metrics: dict) -> None:
    """Every process's weights against process 0's; a mismatch fails the run."""
    metrics["weights_match"] = processes.weights_match(model)
    if not metrics["weights_match"]:
        metrics["status"] = "failed"
        metrics["error"] = f"the weights of the {metrics['processes']} processes differ at the end of training"
