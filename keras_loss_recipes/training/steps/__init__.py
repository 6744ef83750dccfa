"""The training and evaluation steps of `StabilityModel`, one module per Keras backend.

The NaN/inf policies the training step applies:

    trainer.on_nonfinite  stop      the update is not applied and training stops (status "diverged")
                          skip      the update is not applied, the step is counted, training goes on
                          continue  every update is applied, NaN weights included
"""
from __future__ import annotations

import importlib

NONFINITE_POLICIES = ("stop", "skip", "continue")
_MODULES = {"tensorflow": "tf_step", "jax": "jax_step", "torch": "torch_step"}


def train_step_for(backend: str):
    """The function `train_step(model, ...)` of `backend`, with Keras's signature for it."""
    return _module(backend).train_step


def test_step_for(backend: str):
    """The function `test_step(model, ...)` of `backend` (validation and evaluation), with Keras's signature."""
    return _module(backend).test_step


def _module(backend: str):
    if backend not in _MODULES:
        raise ValueError(f"backend={backend!r}: training steps exist for {sorted(_MODULES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[backend]}")
