"""Every use of Keras's (and JAX's) private API in the project, in one place.

Keras and JAX keep these names out of their public API, so any release may rename or reshape them. The
project reaches them only through the functions below, each named for what the project does with it; a
change is fixed here, not at the call sites. `USES` lists them: the name, which function here reaches it,
what for, and the release it is known to work with. tests/test_private_api.py checks each against the
installed release and fails naming the one to update here; it also checks that no module outside this one
touches a private name, and that docs/backends.md's list is `markdown()` (print it with
`python -m keras_loss_recipes.runtime.private_api`).

"Private" here: an underscore name, a module under `keras.src` or `jax._src`, or a public name whose use is
Keras's internals (`train_function`: how `fit()` makes and calls it, which differs per backend).
"""
from __future__ import annotations

from dataclasses import dataclass

KERAS_KNOWN = "Keras 3.15.1"  # the release every Keras use below is known to work with
JAX_KNOWN = "JAX 0.10.2"


@dataclass(frozen=True)
class PrivateUse:
    name: str  # as the library spells it
    accessor: str  # the function (or constant) of this module that reaches it
    used_for: str
    known: str  # the release it is known to work with


USES = (
    PrivateUse("keras.Model._compute_loss", "step_loss",
               "the loss in StabilityModel's PyTorch steps and TensorFlow evaluation step, as Keras's own steps get "
               "it (it passes `training` only to a compute_loss that takes it)", KERAS_KNOWN),
    PrivateUse("keras.Model._loss_tracker", "loss_mean",
               "the mean behind the `loss` figure, which StabilityModel's steps update themselves (under "
               "`skip`, without the skipped steps)", KERAS_KNOWN),
    PrivateUse("keras.Model._initial_epoch", "start_fit_at",
               "the epoch a resumed fit starts at, set in `on_train_begin` as Keras's BackupAndRestore does",
               KERAS_KNOWN),
    PrivateUse("keras.Model._symbolic_build", "build_for_batch",
               "building the compiled metrics before the first step, so that a run resumed in the middle of an "
               "epoch can put back their running figures", KERAS_KNOWN),
    PrivateUse("keras.Model.train_function", "fit_step_function, set_fit_step_function, pass_over_train_call",
               "counting a fit's steps without a batch hook, and passing over the batches a resumed epoch "
               "already trained on: `fit()` makes it before `on_train_begin` and calls it with (iterator) on "
               "TensorFlow, (state, iterator) on JAX, (batches) on PyTorch", KERAS_KNOWN),
    PrivateUse("keras.Layer._flatten_layers", "inner_layers",
               "every layer inside a model, nested ones included, in order: a subclassed model's head, its "
               "saved form", KERAS_KNOWN),
    PrivateUse("keras.Layer._tracker, keras.Layer._layers", "replace_layer",
               "swapping a built subclassed model's softmax layer for a linear one", KERAS_KNOWN),
    PrivateUse("keras.src.models.functional.Functional", "is_functional",
               "telling a functional model (keras_hub's included) from a subclassed one", KERAS_KNOWN),
    PrivateUse("jax._src.distributed.global_state.client", "jax_coordinator_client",
               "the coordinator's key-value store, where process 0 tells the others what it decided",
               JAX_KNOWN),
    PrivateUse("jax._src.lib._jax.make_gloo_tcp_collectives, jax._src.xla_bridge.register_backend_factory, "
               "jax._src.xla_bridge.make_cpu_client", "bind_gloo_collectives",
               "gloo's collectives listening on the group's host, not wherever the machine's name resolves",
               JAX_KNOWN),
    PrivateUse("jax._src.xla_bridge (logger)", "JAX_BACKEND_LOGGER",
               "quieting its INFO line that no TPU was found", JAX_KNOWN),
)

JAX_BACKEND_LOGGER = "jax._src.xla_bridge"


# Keras ---------------------------------------------------------------------------------------------------

def step_loss(model, x, y, y_pred, sample_weight, training: bool):
    """The batch's loss, as Keras's own train and test steps compute it."""
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


def loss_mean(model):
    """The metric (a Mean) whose result is the model's `loss` figure."""
    return model._loss_tracker


def start_fit_at(model, epoch: int) -> None:
    """The running fit starts at `epoch` (0-based): call it from a callback's `on_train_begin`."""
    model._initial_epoch = epoch


def build_for_batch(model, data_batch) -> None:
    """Build the model, its compiled loss and metrics and its optimizer, as a first step on `data_batch` would."""
    model._symbolic_build(data_batch=data_batch)


def fit_step_function(model):
    """The function `fit()` calls for each step (or `steps_per_execution` steps); None before `fit()` makes it."""
    return model.train_function


def set_fit_step_function(model, function) -> None:
    """`fit()` calls `function` for its steps from now on, with the train function's arguments."""
    model.train_function = function


def pass_over_train_call(args: tuple, per_call: int):
    """What a call of the train function with `args` returns when it trains nothing: the call's batches are
    taken (the data move on), its logs are empty, JAX's training state goes on unchanged."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":  # (batches): Keras took them already
        return {}
    iterator = args[-1]  # TensorFlow (iterator), JAX (state, iterator): the function takes its batches
    for _ in range(per_call):
        next(iterator)
    return {} if backend == "tensorflow" else ({}, args[0])


def inner_layers(layer, include_self: bool) -> list:
    """Every layer inside `layer`, nested ones included, depth first in the order they were added."""
    return list(layer._flatten_layers(include_self=include_self))


def replace_layer(model, name: str, old, new) -> None:
    """`model.<name>`, which holds the layer `old`, set to the layer `new`, on a model whose layers Keras has
    locked once built: the old one leaves the model's layers, the new one takes its place."""
    model._tracker.unlock()
    try:
        delattr(model, name)
        if old in model._layers:
            model._layers.remove(old)
        setattr(model, name, new)
    finally:
        model._tracker.lock()


def is_functional(model) -> bool:
    """A model built as a graph of layers (`keras.Model(inputs, outputs)`, or a class that derives from one)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


# JAX -----------------------------------------------------------------------------------------------------

def jax_coordinator_client():
    """The client of the distributed runtime's coordinator (`key_value_set`, `blocking_key_value_get`); None
    before `jax.distributed.initialize`."""
    from jax._src import distributed

    return distributed.global_state.client


def bind_gloo_collectives(host: str) -> bool:
    """Register JAX's CPU client anew, its gloo collectives listening on `host` (before any backend starts).
    False, with nothing done, where this JAX cannot make them with a host."""
    from jax._src import distributed, xla_bridge
    from jax._src.lib import _jax

    if not hasattr(_jax, "make_gloo_tcp_collectives"):
        return False

    def cpu_client():
        collectives = _jax.make_gloo_tcp_collectives(distributed_client=distributed.global_state.client,
                                                     hostname=host)
        return xla_bridge.make_cpu_client(collectives=collectives)

    xla_bridge.register_backend_factory("cpu", cpu_client, priority=0, fail_quietly=False)
    return True


# The list, for docs/backends.md -----------------------------------------------------------------------------

def markdown() -> str:
    """docs/backends.md's list of the private names used, one table row each."""
    rows = ["| private name | reached through | used for | known to work with |", "|---|---|---|---|"]
    rows += [f"| `{use.name}` | `{use.accessor}` | {use.used_for} | {use.known} |" for use in USES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
