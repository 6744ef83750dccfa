"""`StabilityMonitor`: the recipes' loss-path check, stability figures and "where it broke", in a plain `model.fit`."""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import keras

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training.backup import host_copy
from keras_loss_recipes.training.telemetry import PREFIX, with_loss_gap

log = logging.getLogger(__name__)
TRAIN_RUN = "train"  # the recipes write their stability figures into <run dir>/train, as here into <log_dir>/train


class LossPathWarning(UserWarning):
    """The compiled loss does not compute the exact cross entropy from the logits on this backend."""


class LossPathError(ValueError):
    """`StabilityMonitor(strict=True)`: the compiled loss is not exact on this backend."""


class StabilityMonitor(keras.callbacks.Callback):
    """Checks how your compiled loss is really computed, logs stability figures, and stops on NaN/inf.

    Add it to your own `model.fit`; your model, loss and training step stay as they are.

    - **At train begin** it measures the loss path of the compiled model on the current backend
      (the loss doctor, in-process). If the loss is not the exact cross entropy of the logits
      (a softmax output whose probabilities Keras clips at 1e-7 on JAX and PyTorch, logits
      taken as probabilities, ...), it warns once (`LossPathWarning`) with the fix; with
      `strict=True` it raises `LossPathError` instead.
    - **At each epoch's end**, given a `probe` batch `(x, y)`, it computes the recipes' stability
      figures on that batch with the weights of that moment (`keras_loss_recipes.training.probe_figures`:
      logits in inference mode, the compiled loss through the model's head and its gradients) and
      writes them to TensorBoard under the recipes' tags, `stability/<name>`, in `log_dir/train`.
      They are one batch at one moment, not the recipes' means over every step of the epoch.
    - **On a non-finite loss** it stops the fit, as `TerminateOnNaN` does, but at the end of the
      epoch where the epoch's loss became NaN/inf (it has no batch hook, so Keras keeps dispatching
      steps asynchronously). With a probe it names where the NaN began: the weights from that
      epoch's start are put back for the diagnosis (a layer and its dtype, the loss, or a
      gradient; `keras_loss_recipes.training.nonfinite_origin`), then the epoch's last weights.

    Args:
        probe: `(x, y)`, a batch of training examples for the figures and the diagnosis (a few
            hundred examples at most: it costs a forward and backward pass per epoch).
        log_dir: directory for TensorBoard event files (`tensorboard --logdir log_dir`); None keeps
            the figures in `epochs` only.
        strict: raise instead of warning when the loss path is lossy.
        check_loss_path: measure the loss path at train begin.

    After `fit`: `loss_path` (the diagnosis, None when not checked), `epochs` (one dict of figures per
    epoch), `stopped_epoch` (1-based; None when it did not stop the fit) and `origin` (where the NaN began).

    Example:

    >>> import keras, numpy as np
    >>> from keras_loss_recipes import StabilityMonitor
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(64, 4)).astype("float32"), np.arange(64) % 3
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> monitor = StabilityMonitor(probe=(x[:32], y[:32]))
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    >>> monitor.lossy, len(monitor.epochs), sorted(monitor.epochs[-1])[:3]
    (False, 2, ['stability/exact_ce', 'stability/grad_norm', 'stability/logit_gap'])
    """

    def __init__(self, probe=None, log_dir=None, strict: bool = False, check_loss_path: bool = True):
        super().__init__()
        if probe is not None and (not isinstance(probe, (tuple, list)) or len(probe) != 2):
            raise UserError(f"StabilityMonitor(probe=...): got {type(probe).__name__}; pass a batch as (x, y)")
        self.probe, self.strict, self.check_loss_path = probe, strict, check_loss_path
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.loss_path = None
        self.epochs: list[dict] = []
        self.stopped_epoch = None
        self.origin = None
        self._figures = self._writer = self._epoch_start = None

    @property
    def lossy(self) -> bool | None:
        """Whether the measured loss path is lossy (None before it is measured)."""
        return None if self.loss_path is None else self.loss_path.lossy

    def on_train_begin(self, logs=None):
        if self.check_loss_path and self.loss_path is None:
            self._check_loss_path()
        if self.probe is not None and self._figures is None:
            from keras_loss_recipes.training.probe_figures import ProbeFigures

            self._figures = ProbeFigures(self.model, *self.probe)

    def _check_loss_path(self) -> None:
        from keras_loss_recipes.api.loss_path import loss_path

        self.loss_path = loss_path(self.model)
        if not self.loss_path.lossy:
            return
        message = self.loss_path.advice()
        if self.strict:
            raise LossPathError(message)
        warnings.warn(message, LossPathWarning, stacklevel=_users_frame())

    def on_epoch_begin(self, epoch, logs=None):
        if self.probe is not None:  # for the diagnosis, should this epoch go non-finite
            self._epoch_start = [host_copy(v) for v in self.model.weights]

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(epoch, float(loss))
            return
        if self._figures is None:
            return
        figures = with_loss_gap({PREFIX + name: value for name, value in self._figures.figures().items()})
        self.epochs.append(figures)
        if self.log_dir is not None:
            for name, value in figures.items():
                self._event_writer().scalar(name, value, epoch)
            self._event_writer().flush()

    def _event_writer(self):
        if self._writer is None:
            from keras_loss_recipes.runtime.event_files import EventWriter

            self._writer = EventWriter(self.log_dir / TRAIN_RUN)
        return self._writer

    def _stop(self, epoch: int, loss: float) -> None:
        self.model.stop_training = True
        self.stopped_epoch = epoch + 1
        where = f"the loss of epoch {epoch + 1} is {loss}"
        if self._epoch_start is not None:
            self.origin = self._diagnose(epoch)
            where += f"; {self.origin['text']}"
        log.warning("StabilityMonitor stopped the fit at the end of epoch %d: %s", epoch + 1, where)
        warnings.warn(f"StabilityMonitor stopped the fit at the end of epoch {epoch + 1}: {where}", RuntimeWarning,
                      stacklevel=_users_frame())

    def _diagnose(self, epoch: int) -> dict:
        """Where the NaN began, on the probe batch with the weights from the epoch's start (then put back)."""
        from keras_loss_recipes.training.nonfinite_origin import diagnose

        end = [host_copy(v) for v in self.model.weights]
        view = self._figures.view
        try:
            for variable, value in zip(self.model.weights, self._epoch_start):
                variable.assign(value)
            x, y = self._figures.x, self._figures.y
            return diagnose(self.model, x, y, self.loss_path.setup if self.loss_path else None,
                            {"epoch": epoch + 1, "step": None}, f"from the start of epoch {epoch + 1}",
                            forward=lambda inputs: _outputs_and_logits(view, inputs),
                            loss=self._figures.loss)
        finally:
            for variable, value in zip(self.model.weights, end):
                variable.assign(value)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _users_frame() -> int:
    """The `stacklevel` of the first caller outside Keras and this package: the user's `model.fit` line."""
    import inspect

    inside = (Path(keras.__file__).parent, Path(__file__).parents[1])
    for level, frame in enumerate(inspect.stack(context=0)[1:], start=1):
        if not any(Path(frame.filename).is_relative_to(folder) for folder in inside):
            return level
    return 1


def _outputs_and_logits(view, x):
    logits = view.logits(x, training=True)
    return view.outputs(logits), logits
