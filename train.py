"""Train an MNIST-style classifier with a chosen loss formulation.

    python train.py                                  # defaults: embedded MNIST, cnn, sparse_from_logits
    python train.py loss=softmax_ce model=mlp
    python train.py -m loss=softmax_ce,from_logits seed=0,1,2
"""
import os
import time

# A job's start-up time counts from here (see recipes/runtime/clock.py).
_PROCESS_START = {"pid": os.getpid(), "at": time.time(), "used": False}

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

from recipes.runtime import run_names  # noqa: E402

run_names.register()  # `${job_dir:...}` (sweep job directories) and `${model_name:...}` of configs/


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg):
    from recipes.cli import main as run

    return run(cfg, HydraConfig.get().runtime.output_dir, started_at=_job_start())


def _job_start() -> float:
    """This process's start for its first job; now for every later job of a sweep (or a launcher's worker)."""
    if _PROCESS_START["pid"] == os.getpid() and not _PROCESS_START["used"]:
        _PROCESS_START["used"] = True
        return _PROCESS_START["at"]
    return time.time()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from recipes.runtime import processes
    from recipes.runtime.backends import preselect_from_argv
    from recipes.runtime.config_files import exit_on_unknown_choices, exit_on_yaml_errors
    from recipes.runtime.errors import UserError

    exit_on_yaml_errors(sys.argv[1:], Path(__file__).resolve().parent / "configs")
    exit_on_unknown_choices(sys.argv[1:], Path(__file__).resolve().parent / "configs")
    try:  # one of several processes training one model: all but process 0 write to a scratch directory
        sys.argv[1:] = processes.worker_argv(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    preselect_from_argv(sys.argv[1:])
    main()
