"""What the training loop does on the backend named by KERAS_BACKEND, for tests/test_loop.py.

    KERAS_BACKEND=jax python tests/loop_driver.py OUT_DIR

1. A small default run (telemetry on, one line per epoch), watched from outside:
   the callbacks that have a batch hook, whether Keras dispatches the steps'
   callbacks asynchronously, and the callback hook in which each of the
   recipes' own device reads (`keras.ops.convert_to_numpy`) happened. The same
   with a progress bar and step figures asked for.
2. The NaN/inf policies decided inside the step: one epoch of three batches,
   the first with a NaN pixel, the others finite; and with two steps per
   execution (`steps_per_execution`), the second batch bad.
3. The evaluation step: its exact cross entropy (from the logits, behind a
   softmax head), its loss and accuracy against plain Keras's.

Prints one line `RESULT {...}`.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")
SMALL = ["model=mlp", "data.max_train_examples=320", "trainer.batch_size=32", "trainer.epochs=2"]


def watched_run(out_dir: Path, overrides: list[str]) -> dict:
    """Train with `overrides`; return the fit's callbacks with a batch hook, Keras's async flag, and the hooks
    the recipes' device reads happened in."""
    import keras

    from keras_loss_recipes.recipes import train as train_recipe
    from keras_loss_recipes.config.compose import compose_train

    seen, reads = {}, []
    fit, convert = train_recipe.fit, keras.ops.convert_to_numpy

    def watching_fit(job, model, datasets, callbacks):
        seen["batch_hooks"] = sorted(type(c).__name__ for c in callbacks if any(
            getattr(type(c), hook) is not getattr(keras.callbacks.Callback, hook) for hook in BATCH_HOOKS))
        seen["async_train"] = keras.callbacks.CallbackList(callbacks, model=model)._async_train
        return fit(job, model, datasets, callbacks)

    def counting_convert(x, *args, **kwargs):
        stack = inspect.stack()[1:]
        if any(f.filename.startswith(str(ROOT / "keras_loss_recipes")) for f in stack):
            # A read by the recipes' code: in which callback hook? Else the function that made it.
            hook = next((f.function for f in stack if f.function.startswith("on_")), stack[0].function)
            reads.append(hook)
        return convert(x, *args, **kwargs)

    train_recipe.fit, keras.ops.convert_to_numpy = watching_fit, counting_convert
    try:
        cfg = compose_train([f"backend={os.environ['KERAS_BACKEND']}", *overrides])
        metrics = train_recipe.run(cfg, out_dir)
    finally:
        train_recipe.fit, keras.ops.convert_to_numpy = fit, convert
    return {**seen, "reads": reads, "status": metrics["status"], "epochs": metrics["epochs_completed"]}


def policy_step(policy: str, bad_batch: int = 0, steps_per_execution: int = 1) -> dict:
    """One epoch of three batches of 4, batch `bad_batch` (0-based) with a NaN pixel: what the step decided."""
    import keras
    import numpy as np

    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.config.settings import validate
    from keras_loss_recipes.training.callbacks import NonFiniteGuard
    from keras_loss_recipes.training.network import build_network
    from keras_loss_recipes.training.optimizers import make_optimizer
    from keras_loss_recipes.training.telemetry import StabilityTracker

    cfg = compose_train([f"backend={os.environ['KERAS_BACKEND']}", "model=mlp", f"trainer.on_nonfinite={policy}"])
    setup = validate(cfg)
    keras.utils.set_random_seed(0)
    model, _, _ = build_network(cfg, setup, (28, 28, 1), 10, StabilityTracker())
    model.compile(optimizer=make_optimizer(cfg.optimizer), loss=setup.make_loss(), metrics=[setup.accuracy_metric()],
                  steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    x = rng.random((12, 28, 28, 1), dtype=np.float32)
    x[4 * bad_batch, 0, 0, 0] = np.nan
    y = rng.integers(0, 10, 12)
    model.build((None, 28, 28, 1))
    before = [np.array(w) for w in model.get_weights()]
    guard = NonFiniteGuard(stop=policy == "stop")
    # With validation: Keras resets the metrics for it before the epoch's logs reach the guard.
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[guard],
              validation_data=(x[4:8], y[4:8]))
    after = model.get_weights()
    return {"first_nonfinite": guard.first_nonfinite, "nonfinite_steps": guard.nonfinite_steps,
            "weights_unchanged": all(np.array_equal(a, b) for a, b in zip(before, after)),
            "weights_finite": all(bool(np.all(np.isfinite(w))) for w in after),
            "stopped": bool(model.stop_training)}


def kept_weights_are_copies(out_dir: Path) -> dict:
    """The host copies the backup and best.keras keep are the values at that moment, whatever the weights do
    after (JAX and PyTorch on a CPU hand out their buffers, which later steps overwrite in place)."""
    import keras
    import numpy as np

    from keras_loss_recipes.training.backup import host_copy
    from keras_loss_recipes.training.callbacks import SaveModels

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    kept = host_copy(model.weights[0])
    saver = SaveModels(model, out_dir, write_every_s=1e9)
    saver.on_epoch_end(0, {"val_accuracy": 0.5})
    before = np.array(keras.ops.convert_to_numpy(model.weights[0]), copy=True)
    model.weights[0].assign(model.weights[0] + 1.0)  # in place, as an optimizer's step
    saver.on_epoch_end(1, {"val_accuracy": 0.4})  # no better: the best stays epoch 0's
    return {"host_copy": bool(np.array_equal(kept, before)),
            "best_weights": bool(np.array_equal(saver.best_weights[0], before))}


def evaluation_figures() -> dict:
    """Validation's exact cross entropy on a softmax head whose probabilities underflow (logits scaled up), and
    the evaluation's loss and accuracy against a plain Keras model of the same layers: what the step adds must
    change nothing Keras measures."""
    import keras
    import numpy as np

    from keras_loss_recipes import losses
    from keras_loss_recipes.config.settings import validate
    from keras_loss_recipes.config.compose import compose_train
    from keras_loss_recipes.training.network import build_network

    cfg = compose_train([f"backend={os.environ['KERAS_BACKEND']}", "model=mlp", "loss=softmax_ce"])
    setup = validate(cfg)
    keras.utils.set_random_seed(0)
    model, logits_model, _ = build_network(cfg, setup, (28, 28, 1), 10, None)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64)
    model.build((None, 28, 28, 1))
    last = model.layers[-2] if model.layers[-1].name == losses.SOFTMAX_LAYER else model.layers[-1]
    last.kernel.assign(last.kernel * 300.0)  # logit gaps of hundreds: most probabilities are 0 in float32
    plain = keras.Model(model.inputs, model.outputs)
    scores = {}
    for name, m in (("model", model), ("plain", plain)):
        m.compile(loss=setup.make_loss(), metrics=[setup.accuracy_metric()])
        scores[name] = m.evaluate(x, setup.encode_labels(y, 10), batch_size=16, verbose=0, return_dict=True)
    logits = np.asarray(logits_model.predict(x, batch_size=16, verbose=0), dtype=np.float64)
    return {"exact_ce": scores["model"]["exact_ce"], "reference": float(losses.exact_cross_entropy(logits, y).mean()),
            "loss": scores["model"]["loss"], "plain_loss": scores["plain"]["loss"],
            "accuracy": scores["model"]["accuracy"], "plain_accuracy": scores["plain"]["accuracy"]}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    result = {
        "default": watched_run(out / "default", SMALL),
        "asked": watched_run(out / "asked", [*SMALL, "trainer.verbose=1", "telemetry.every_n_steps=5"]),
        "policies": {policy: policy_step(policy) for policy in ("stop", "skip", "continue")},
        # Two steps per call into the backend (one on PyTorch, which takes no more), the second one bad: still
        # counted step by step.
        "executions": policy_step("stop", bad_batch=1,
                                  steps_per_execution=1 if os.environ["KERAS_BACKEND"] == "torch" else 2),
    }
    result["copies"] = kept_weights_are_copies(out)
    result["evaluation"] = evaluation_figures()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
