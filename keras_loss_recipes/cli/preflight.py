"""Checks of the command line that must come before Hydra, which creates the run directory and writes into it.

Each failure is one `error:` line and exit code 2, before Keras starts:
    optimized_metric=   not a validation figure (a sweeper reads its direction first)
    hydra.run.dir=      in use by a live process (its lock; keras_loss_recipes/runtime/run_lock.py)
    the runs directory  not writable (a read-only file system or mount)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from keras_loss_recipes.runtime import run_lock
from keras_loss_recipes.config.config_files import overrides_of
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.reporting.objective import objective

MULTIRUN_FLAGS = ("-m", "--multirun")


def check(argv: list[str], configs: Path) -> None:
    """UserError for the first of the checks above that fails."""
    overrides = overrides_of(argv)
    if "optimized_metric" in overrides and "," not in overrides["optimized_metric"]:
        objective(overrides["optimized_metric"])
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv) or "hparams_search" in overrides
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = overrides.get(key) or _configured(configs, key)
    if "${" not in target and not multirun:
        run_lock.check_free(Path(target))
    _check_writable(key, target, given=key in overrides)


def _configured(configs: Path, key: str) -> str:
    """`hydra.run.dir` or `hydra.sweep.dir` as configs/train.yaml writes it (interpolations unresolved)."""
    import yaml

    node = yaml.safe_load((configs / "train.yaml").read_text())
    for part in key.split("."):
        node = (node or {}).get(part) if isinstance(node, dict) else None
    return str(node or "runs")


def _check_writable(key: str, target: str, given: bool) -> None:
    """The directory the run would be made in (the part of `target` before any interpolation), or its nearest
    existing parent, must take a new file."""
    path = Path(target.split("${", 1)[0] or ".").absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        said = f"{key}={target}" if given else f"{key} (default {target.split('${', 1)[0]}...)"
        raise UserError(f"{said}: cannot write in {path} ({err.strerror}); pass a writable {key}") from None
