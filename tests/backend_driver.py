"""Runs recipes (train, probe, evaluate) in this process on the backend named by KERAS_BACKEND.

Keras picks its backend once per process, so the tests run this file as a child
process per backend:

    KERAS_BACKEND=jax python tests/backend_driver.py OUT_DIR '{"name": ["override", ...], ...}'

It prints one line `RESULT {name: metrics}` (`keras_loss_recipes.runtime.workers.report`), each with
`fit_steps_per_execution`: the steps per execution of each fit's model, as compiled. A run named
`loss_paths` lists formulations instead of overrides: its result is {formulation: the loss path measured
in this process} (`detect_loss_path`), for those no recipe trains yet. With BLOCK_TENSORFLOW=1 in the
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


def record_fits(set_fit=setattr) -> list[int]:
    """From now on each Keras fit in this process first appends the steps per execution its model was compiled
    with: what `trainer.steps_per_execution` reached (the figures are the same for 1 and 2, so they cannot tell).
    `set_fit(keras.Model, "fit", wrapped)` puts the wrapper in place (a test passes monkeypatch.setattr)."""
    import keras

    fits, fit = [], keras.Model.fit

    def recorded(model, *args, **kwargs):
        fits.append(int(model.steps_per_execution))
        return fit(model, *args, **kwargs)

    set_fit(keras.Model, "fit", recorded)
    return fits


LOSS_PATHS = "loss_paths"


def measured_paths(names: list[str]) -> dict:
    from keras_loss_recipes import losses
    from keras_loss_recipes.losses.paths import detect_loss_path

    return {name: detect_loss_path(losses.get(name)).path for name in names}


def main(out_dir: str, runs_json: str) -> None:
    if os.environ.get("BLOCK_TENSORFLOW") == "1":
        hide_tensorflow()
    from keras_loss_recipes.lifecycle.run import Run, run_recipe
    from keras_loss_recipes.recipes.registry import get_recipe
    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.runtime.workers import report

    results, fits = {}, record_fits()
    for name, overrides in json.loads(runs_json).items():
        if name == LOSS_PATHS:
            results[name] = measured_paths(overrides)
            continue
        cfg = compose_train([f"backend={os.environ['KERAS_BACKEND']}", *overrides])
        before = len(fits)
        results[name] = run_recipe(get_recipe(cfg.recipe.name), Run(cfg, Path(out_dir) / name))
        results[name]["fit_steps_per_execution"] = fits[before:]  # one per fit, as compiled
    report(results)


if __name__ == "__main__":
    main(*sys.argv[1:])
