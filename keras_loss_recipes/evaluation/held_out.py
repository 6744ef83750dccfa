"""A trained model on its run's test split: accuracy, the formulation's own loss, and the exact cross entropy
and calibration error of its logits, before and after the temperature fitted on the validation logits (step 7
of the training recipe)."""
from __future__ import annotations

import numpy as np

from keras_loss_recipes import losses
from keras_loss_recipes.data.inputs import IMAGES
from keras_loss_recipes.data.pipeline import model_inputs
from keras_loss_recipes.data.splits import is_streamed
from keras_loss_recipes.evaluation import task_scores
from keras_loss_recipes.evaluation.calibration import calibration_figures, fit_temperature
from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS
from keras_loss_recipes.training.network import predict_logits

STREAMED_CHUNK = 1024  # test images read at once from a streamed source


def scores(model, logits_model, test_ds, splits, batch_size: int, split_over: int = 1,
                 shard: tuple[int, int] = (0, 1), task: str = losses.MULTICLASS) -> dict:
    """`model` evaluated on the batches `test_ds` (its loss and accuracy, as compiled), and the logits of
    `logits_model` on every test image (`splits.x_test`), scored against `splits.y_test`: with the calibration
    keys, of a temperature fitted on the logits of every validation image (one more pass, over those).
    `task`: binary and multilabel logits are a sigmoid per unit's (binary cross entropy, calibrated per unit:
    `calibration.two_class_logits`); multilabel adds each label's accuracy and the macro F1."""
    scores = model.evaluate(test_ds, verbose=0, return_dict=True)
    sigmoid = losses.TASK_FAMILIES[task] == "sigmoid"
    logits = all_logits(logits_model, splits.x_test, batch_size, split_over, shard, splits.inputs)
    val_logits = (all_logits(logits_model, splits.x_val, batch_size, split_over, shard, splits.inputs)
                  if len(splits.y_val) else None)
    figures = {"test_accuracy": float(scores["accuracy"]), "test_loss": float(scores["loss"]),
               "test_exact_ce": task_scores.exact_ce(logits, splits.y_test, sigmoid)}
    if task == losses.MULTILABEL:
        figures.update(task_scores.multilabel_figures(logits, splits.y_test))
    return {**figures, **calibration(*task_scores.scored_as(task, val_logits, splits.y_val),
                                     *task_scores.scored_as(task, logits, splits.y_test))}


def calibration(val_logits, val_labels, test_logits, test_labels) -> dict:
    """A run's calibration keys (`calibration_figures`), None where its logits give none: no T without
    validation logits (an empty split) or with non-finite ones, no test figure of non-finite test logits (a
    diverged run)."""
    temperature = fit_temperature(val_logits, val_labels) if _finite(val_logits) else None
    if not _finite(test_logits):
        return {**dict.fromkeys(CALIBRATION_KEYS), "temperature": temperature}
    return calibration_figures(test_logits, test_labels, temperature)


def _finite(logits) -> bool:
    return logits is not None and len(logits) > 0 and bool(np.all(np.isfinite(logits)))


def all_logits(logits_model, images, batch_size: int, split_over: int = 1,
                shard: tuple[int, int] = (0, 1), inputs: str = IMAGES) -> np.ndarray:
    """The logits of every image (or row: `inputs`, what they are); streamed images (a folder) a chunk at a
    time, as they are read."""
    chunk = STREAMED_CHUNK if is_streamed(images) else max(len(images), 1)
    return np.concatenate([
        predict_logits(logits_model, model_inputs(images[i:i + chunk], inputs), batch_size, split_over, shard)
        for i in range(0, len(images), chunk)])
