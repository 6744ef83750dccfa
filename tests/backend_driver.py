"""Runs recipes (train, probe, evaluate) in this process on the backend named by KERAS_BACKEND.

Keras picks its backend once per process, so the tests run this file as a child
process per backend:

    KERAS_BACKEND=jax python tests/backend_driver.py OUT_DIR '{"name": ["override", ...], ...}'

It prints one line `RESULT {name: metrics}` (`keras_loss_recipes.runtime.workers.report`). With BLOCK_TENSORFLOW=1 in the
environment, importing tensorflow (or tensorflow_datasets) fails here, as on a
machine without them.
"""
from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


HIDDEN = ("tensorflow", "tensorflow_datasets")


class _PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
    """The standard path finder, blind to TensorFlow: as if it were not installed.

    (`import tensorflow` raises ModuleNotFoundError, `importlib.util.find_spec`
    gives None and nothing appears in sys.modules, which libraries probe.)
    """

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(fullname, path, target)


def hide_tensorflow() -> None:
    assert not any(name.partition(".")[0] in HIDDEN for name in sys.modules), "TensorFlow is already imported"
    sys.meta_path[:] = [_PathFinderWithoutTensorFlow if f is importlib.machinery.PathFinder else f
                        for f in sys.meta_path]


def main(out_dir: str, runs_json: str) -> None:
    if os.environ.get("BLOCK_TENSORFLOW") == "1":
        hide_tensorflow()
    from keras_loss_recipes.recipes.registry import get_recipe
    from keras_loss_recipes.runtime.compose import compose_train
    from keras_loss_recipes.runtime.workers import report

    results = {}
    for name, overrides in json.loads(runs_json).items():
        cfg = compose_train([f"backend={os.environ['KERAS_BACKEND']}", *overrides])
        results[name] = get_recipe(cfg.recipe.name)(cfg, Path(out_dir) / name)
    report(results)


if __name__ == "__main__":
    main(*sys.argv[1:])
