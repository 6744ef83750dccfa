"""Where runs broke, on the backend named by KERAS_BACKEND, for tests/test_origin.py.

    KERAS_BACKEND=jax python tests/origin_driver.py OUT_DIR

Trains each case of scripts/origin_examples.py (the examples of docs/stability.md),
and one run that stays finite with the diagnosis made to fail if it is ever
called. Prints one line `RESULT {...}`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(out_dir: str) -> None:
    from keras_loss_recipes.recipes import train
    from keras_loss_recipes.reporting.tensorboard_views import run_summary
    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.training import nonfinite_origin as origin
    from scripts import origin_examples

    backend = os.environ["KERAS_BACKEND"]
    out, result = Path(out_dir), {}
    for case in origin_examples.CASES:
        metrics = train.run(compose_train([*origin_examples.overrides(case), f"backend={backend}"]), out / case)
        result[case] = {"status": metrics["status"], "first_nonfinite": metrics["first_nonfinite"],
                        "origin": metrics["nonfinite_origin"], "summary": run_summary(metrics, [])}

    # Under `continue` the bad updates go in: by the epoch's end the weights themselves are NaN/inf.
    metrics = train.run(compose_train([*origin_examples.overrides("blow_up"), "trainer.on_nonfinite=continue",
                                       f"backend={backend}"]), out / "continue")
    result["continue"] = {"status": metrics["status"], "origin": metrics["nonfinite_origin"]}

    def never(*args, **kwargs):
        raise AssertionError("the diagnosis ran in a run that stayed finite")

    origin.diagnose = never
    metrics = train.run(compose_train([*origin_examples.SMALL, f"backend={backend}"]), out / "finite")
    result["finite"] = {"status": metrics["status"], "origin": metrics["nonfinite_origin"],
                        "nonfinite_steps": metrics["nonfinite_steps"]}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
