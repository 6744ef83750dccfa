"""The training command: `python train.py ...` in a clone, `recipes-train ...` once pip installed the project.

Both run `main()`: the command line's config files and choices are checked
(one `error:` line each, exit code 2), a process of several that train one model
gets its scratch run directory, the Keras backend is chosen from the command
line before anything imports Keras, and then Hydra composes the config from
`configs/` (`compose.config_dir()`: the clone's, or the copy pip installed),
plus any `--config-dir` of the user's, and `recipes.cli` runs the recipe.
"""
from __future__ import annotations

import os
import sys
import time

# A job's start-up time counts from the process's start (see recipes/runtime/clock.py).
_PROCESS_START = {"pid": os.getpid(), "at": time.time(), "used": False}


def _job_start() -> float:
    """This process's start for its first job; now for every later job of a sweep (or a launcher's worker)."""
    if _PROCESS_START["pid"] == os.getpid() and not _PROCESS_START["used"]:
        _PROCESS_START["used"] = True
        return _PROCESS_START["at"]
    return time.time()


def task(cfg):
    """What Hydra calls for each job."""
    from hydra.core.hydra_config import HydraConfig

    from recipes.cli import main as run

    return run(cfg, HydraConfig.get().runtime.output_dir, started_at=_job_start())


def main(process_start: float | None = None) -> None:
    """The command itself, on `sys.argv`; `process_start` (time.time()) when the caller noted it earlier."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter, unless asked for
    if process_start is not None:
        _PROCESS_START["at"] = process_start
    import hydra

    from recipes.runtime import processes, run_names
    from recipes.runtime.backends import preselect_from_argv
    from recipes.runtime.compose import config_dir
    from recipes.runtime.config_files import exit_on_unknown_choices, exit_on_yaml_errors
    from recipes.runtime.errors import UserError

    run_names.register()  # `${job_dir:...}`, `${model_name:...}`, `${data_name:...}` of configs/
    configs = config_dir()
    exit_on_yaml_errors(sys.argv[1:], configs)
    exit_on_unknown_choices(sys.argv[1:], configs)
    try:  # one of several processes training one model: all but process 0 write to a scratch directory
        sys.argv[1:] = processes.worker_argv(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    preselect_from_argv(sys.argv[1:])
    hydra.main(config_path=str(configs), config_name="train", version_base="1.3")(task)()
