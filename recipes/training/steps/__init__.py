"""The training step of `StabilityModel`, one module per Keras backend, and the NaN/inf policies they apply.

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
    if backend not in _MODULES:
        raise ValueError(f"backend={backend!r}: training steps exist for {sorted(_MODULES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[backend]}").train_step
