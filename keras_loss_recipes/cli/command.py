"""The training command: `python train.py ...` in a clone, `recipes-train ...` once pip installed the project.

Both run `main()`: the command line's config files and choices are checked
(one `error:` line each, exit code 2), a process of several that train one model
gets its scratch run directory, the Keras backend is chosen from the command
line before anything imports Keras, and then Hydra composes the config from
`configs/` (`compose.config_dir()`: the clone's, or the copy pip installed),
plus any `--config-dir` of the user's, and `keras_loss_recipes.cli.job` runs the recipe.
"""
from __future__ import annotations

import os
import sys
import time

_IMPORTED_AT = time.time()  # recipes-train: the console script imports this module first thing


def task(cfg):
    """What Hydra calls for each job."""
    from hydra.core.hydra_config import HydraConfig

    from keras_loss_recipes.cli.job import run_job
    from keras_loss_recipes.runtime import clock

    with clock.job():
        return run_job(cfg, HydraConfig.get().runtime.output_dir)


def main(process_start: float | None = None) -> None:
    """The command itself, on `sys.argv`; `process_start` (time.time()) when the caller noted it earlier."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter, unless asked for
    import hydra

    from keras_loss_recipes.cli import preflight
    from keras_loss_recipes.config import resolvers
    from keras_loss_recipes.runtime import clock, processes
    from keras_loss_recipes.sweeps import job_names
    from keras_loss_recipes.runtime.backends import preselect
    from keras_loss_recipes.config.compose import config_dir
    from keras_loss_recipes.config.config_files import exit_on_unknown_choices, exit_on_yaml_errors, overrides_of
    from keras_loss_recipes.runtime.errors import UserError

    clock.mark_process_start(_IMPORTED_AT if process_start is None else process_start)
    resolvers.register()  # `${model_name:...}`, `${data_name:...}`, ... of configs/
    job_names.register()  # `${job_dir:...}`
    configs = config_dir()
    exit_on_yaml_errors(sys.argv[1:], configs)
    exit_on_unknown_choices(sys.argv[1:], configs)
    try:  # one of several processes training one model: all but process 0 write to a scratch directory
        preflight.check(sys.argv[1:], configs)  # before Hydra makes the run directory and writes into it
        sys.argv[1:] = processes.worker_argv(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    preselect(overrides_of(sys.argv[1:]).get("backend"))
    hydra.main(config_path=str(configs), config_name="train", version_base="1.3")(task)()
