"""Keras's and JAX's private names, as keras_loss_recipes/runtime/private_api.py uses them: each still there, with
the shape the project relies on; none reached from anywhere else; docs/backends.md's list is the module's.

No training: signatures, a tiny model's attributes, and the source of each backend's `fit()` (read as text, so
the JAX and PyTorch trainers are checked without importing those backends)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from keras_loss_recipes.runtime import private_api
from tests.conftest import INSTALLS, ROOT, unavailable

MODULE = "keras_loss_recipes/runtime/private_api.py"
PACKAGE = ROOT / "keras_loss_recipes"
DOCS = ROOT / "docs" / "backends.md"


# Small Keras objects ------------------------------------------------------------------------------------------

def tiny_model(metrics=None):
    """A compiled two-layer functional classifier (not built by any step)."""
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(4)(inputs)))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=metrics)
    return model


def tiny_subclassed():
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(2)
            self.head = keras.layers.Softmax()

        def call(self, x):
            return self.head(self.hidden(x))

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    return model


def fit_source(backend: str) -> str:
    """`fit()` of `backend`'s trainer, normalised by `ast.unparse` (formatting changes do not count)."""
    import keras

    path = Path(keras.__file__).parent / "src" / "backend" / backend / "trainer.py"
    assert path.is_file(), f"{path} is gone"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "fit":
            return ast.unparse(node)
    raise AssertionError(f"{path} has no fit()")


def in_order(backend: str, *pieces: str) -> None:
    """Each of `pieces` appears in `backend`'s `fit()`, after the one before it."""
    source, at, before = fit_source(backend), 0, "the start"
    for piece in pieces:
        found = source.find(piece, at)
        assert found >= 0, f"`{piece}` no longer comes after `{before}` in the {backend} backend's fit()"
        at, before = found + len(piece), piece


def parameters(function) -> set:
    return set(inspect.signature(function).parameters)


# One check per use: each raises AssertionError saying what changed ----------------------------------------------

FIT_CALLS = {"tensorflow": "logs = self.train_function(iterator)",
             "jax": "logs, state = self.train_function(state, iterator)",
             "torch": "logs = self.train_function(data)"}


def check_compute_loss():
    import keras

    assert {"x", "y", "y_pred", "sample_weight", "training"} <= parameters(keras.Model._compute_loss), \
        f"its parameters are now {sorted(parameters(keras.Model._compute_loss))}"
    model, x, y = tiny_model(), np.ones((2, 3), "float32"), np.array([0, 1])
    y_pred = model(x)
    got = float(private_api.step_loss(model, x, y, y_pred, None, training=False))
    want = float(model.compute_loss(x=x, y=y, y_pred=y_pred, training=False))
    assert got == want, f"it gives {got}, the public compute_loss {want}"


def check_loss_tracker():
    import keras

    model = tiny_model()
    tracker = private_api.loss_mean(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss", f"it is now {tracker!r}"
    assert any(m is tracker for m in model.metrics), "it is no longer one of model.metrics (the `loss` figure)"


def check_initial_epoch():
    model = tiny_model()
    assert hasattr(model, "_initial_epoch"), "a model no longer has it"
    private_api.start_fit_at(model, 3)
    for backend in FIT_CALLS:
        in_order(backend, "callbacks.on_train_begin()", "initial_epoch = self._initial_epoch or")


def check_symbolic_build():
    import keras

    assert "data_batch" in parameters(keras.Model._symbolic_build), \
        f"its parameters are now {sorted(parameters(keras.Model._symbolic_build))}"
    model = tiny_model(metrics=["accuracy"])
    assert not all(getattr(m, "built", True) for m in model.metrics), "compile() now builds the metrics itself"
    private_api.build_for_batch(model, (keras.KerasTensor((None, 3)), keras.KerasTensor((None,), dtype="int32")))
    unbuilt = [m.name for m in model.metrics if not getattr(m, "built", True)]
    assert not unbuilt, f"it no longer builds the compiled metrics ({unbuilt} are not built)"


def check_train_function():
    model = tiny_model()
    assert hasattr(model, "train_function") and private_api.fit_step_function(model) is None, \
        "a model has no train_function (None) before fit() makes it"
    for backend, call in FIT_CALLS.items():
        in_order(backend, "self.make_train_function()", "callbacks.on_train_begin()", call)


def check_flatten_layers():
    import keras

    assert "include_self" in parameters(keras.layers.Layer._flatten_layers)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="inner_dense")], name="inner")
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(2, name="last")], name="outer")
    every = ["outer", "inner", "inner_dense", "last"]  # depth first, in the order added (input layers aside)
    for include_self, want in ((True, every), (False, every[1:])):
        names = [layer.name for layer in private_api.inner_layers(outer, include_self=include_self)
                 if not isinstance(layer, keras.layers.InputLayer)]
        assert names == want, f"with include_self={include_self} it now gives {names}"


def check_tracker_and_layers():
    import keras

    model = tiny_subclassed()
    old, new = model.head, keras.layers.Activation("linear", name=model.head.name)
    private_api.replace_layer(model, "head", old, new)
    layers = private_api.inner_layers(model, include_self=False)
    assert model.head is new and new in layers and old not in layers, \
        f"the model's layers are now {[type(layer).__name__ for layer in layers]}"
    try:
        model.extra = keras.layers.Dense(1)
    except ValueError:
        return  # locked again, as Keras leaves a built model: it takes no new layer
    raise AssertionError("the model's layers are no longer locked after it (Tracker.lock)")


def check_functional():
    import keras

    inputs = keras.Input((3,))
    assert private_api.is_functional(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    assert not private_api.is_functional(tiny_subclassed())


def jax_module(name: str):
    if importlib.util.find_spec("jax") is None:
        unavailable(f"jax is not installed ({INSTALLS['jax']})")
    return importlib.import_module(name)


def doc_parameters(function) -> str:
    """A compiled function's signature, from the first line of its docstring (nanobind gives no other)."""
    return (function.__doc__ or "").strip().splitlines()[0] if function.__doc__ else ""


def check_jax_coordinator():
    distributed, lib = jax_module("jax._src.distributed"), jax_module("jax._src.lib")
    assert hasattr(distributed.global_state, "client"), "global_state has no `client`"
    client = lib._jax.DistributedRuntimeClient
    for method, wanted in (("key_value_set", "(self, key: str, value: str"),
                           ("blocking_key_value_get", "(self, key: str, timeout_in_ms: int")):
        line = doc_parameters(getattr(client, method, None))
        assert wanted in line, f"DistributedRuntimeClient.{method} is now `{line}`"


def check_jax_gloo():
    xla_bridge, lib = jax_module("jax._src.xla_bridge"), jax_module("jax._src.lib")
    assert hasattr(lib._jax, "make_gloo_tcp_collectives"), "_jax.make_gloo_tcp_collectives is gone"
    line = doc_parameters(lib._jax.make_gloo_tcp_collectives)
    assert "distributed_client" in line and "hostname" in line, f"make_gloo_tcp_collectives is now `{line}`"
    assert {"name", "factory", "priority", "fail_quietly"} <= parameters(xla_bridge.register_backend_factory), \
        f"register_backend_factory takes {sorted(parameters(xla_bridge.register_backend_factory))}"
    assert "collectives" in parameters(xla_bridge.make_cpu_client), \
        f"make_cpu_client takes {sorted(parameters(xla_bridge.make_cpu_client))}"


def check_jax_logger():
    xla_bridge = jax_module(private_api.JAX_BACKEND_LOGGER)
    assert getattr(getattr(xla_bridge, "logger", None), "name", None) == private_api.JAX_BACKEND_LOGGER, \
        "it no longer logs under its module's name"


CHECKS = {
    "keras.Model._compute_loss": check_compute_loss,
    "keras.Model._loss_tracker": check_loss_tracker,
    "keras.Model._initial_epoch": check_initial_epoch,
    "keras.Model._symbolic_build": check_symbolic_build,
    "keras.Model.train_function": check_train_function,
    "keras.Layer._flatten_layers": check_flatten_layers,
    "keras.Layer._tracker, keras.Layer._layers": check_tracker_and_layers,
    "keras.src.models.functional.Functional": check_functional,
    "jax._src.distributed.global_state.client": check_jax_coordinator,
    "jax._src.lib._jax.make_gloo_tcp_collectives, jax._src.xla_bridge.register_backend_factory, "
    "jax._src.xla_bridge.make_cpu_client": check_jax_gloo,
    "jax._src.xla_bridge (logger)": check_jax_logger,
}


def installed(use: private_api.PrivateUse) -> str:
    library = use.known.split()[0]
    return f"{library} {importlib.import_module(library.lower()).__version__}"


@pytest.mark.parametrize("use", private_api.USES, ids=lambda use: use.accessor.split(",")[0])
def test_each_private_name_is_still_as_the_project_uses_it(use):
    check = CHECKS.get(use.name)
    assert check is not None, f"{use.name} is listed in {MODULE} but checked by no function of this test"
    try:
        check()
        return
    except (AssertionError, AttributeError, ImportError, TypeError, ValueError) as err:
        changed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    pytest.fail(f"{installed(use)} changed {use.name}, which {MODULE} ({use.accessor}) uses for {use.used_for}; "
                f"it is known to work with {use.known}. What changed: {changed}. Update it there.", pytrace=False)


def test_every_check_is_of_a_listed_use_and_every_accessor_exists():
    assert set(CHECKS) == {use.name for use in private_api.USES}
    named = {name.strip() for use in private_api.USES for name in use.accessor.split(",")}
    missing = [name for name in named if not hasattr(private_api, name)]
    assert not missing, f"USES names accessors that {MODULE} does not define: {missing}"
    reaching = {name for name, value in vars(private_api).items() if inspect.isfunction(value)
                and value.__module__ == private_api.__name__} - {"markdown"}
    assert reaching <= named, f"functions of {MODULE} that USES does not list: {sorted(reaching - named)}"


# Reached from nowhere else --------------------------------------------------------------------------------------

PRIVATE_MODULE = re.compile(r"^(keras\.src|jax\._src|jaxlib|tensorflow\.python|torch\._)(\.\w+)*$")
PUBLIC_DESPITE_UNDERSCORE = {"os._exit"}  # documented API
# No underscore, but how fit() makes and calls them is Keras's internals (private_api.fit_step_function).
INTERNAL_ATTRIBUTES = {"train_function", "make_train_function", "test_function", "predict_function"}


# Hydra's key of a config node naming the callable it builds (`model._target_`): config, not private API.
CONFIG_KEYS = {"_target_"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in CONFIG_KEYS


def dotted(node) -> str:
    """`a.b.c` of a Name or Attribute chain ("" for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def is_self(node) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def reaches_in(node) -> str | None:
    """What `node` reaches of another library's (or object's) private parts, or None."""
    if isinstance(node, ast.ImportFrom) and PRIVATE_MODULE.match(node.module or ""):
        return f"from {node.module} import"
    if isinstance(node, ast.Import):
        return next((f"import {a.name}" for a in node.names if PRIVATE_MODULE.match(a.name)), None)
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and PRIVATE_MODULE.match(node.value):
        return repr(node.value)
    if isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES:
        return f"{dotted(node.value) or '<expression>'}.{node.attr}"
    if isinstance(node, ast.Attribute) and is_private(node.attr) and not is_self(node.value):
        name = f"{dotted(node.value) or '<expression>'}.{node.attr}"
        return None if name in PUBLIC_DESPITE_UNDERSCORE else name
    if (isinstance(node, ast.Call) and dotted(node.func) in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
            and is_private(str(node.args[1].value)) and not is_self(node.args[0])):
        return f"{dotted(node.func)}(..., {node.args[1].value!r})"
    return None


def keras_samples() -> dict:
    """An instance of each Keras class the package derives from, as set up as Keras sets it up for a fit."""
    import keras

    model = tiny_model()

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return np.zeros((1, 3)), np.zeros((1,))

    callback, progress = keras.callbacks.Callback(), keras.callbacks.ProgbarLogger()
    callback.set_model(model)
    progress.set_model(model)
    return {keras.Model: model, keras.callbacks.Callback: callback, keras.callbacks.ProgbarLogger: progress,
            keras.metrics.Metric: keras.metrics.Mean(), keras.losses.Loss: keras.losses.MeanSquaredError(),
            keras.utils.PyDataset: Batches()}


def keras_base(node: ast.expr):
    """The Keras class a base like `keras.callbacks.Callback` names, or None."""
    import keras

    name = dotted(node)
    if not name.startswith("keras."):
        return None
    found = keras
    for part in name.split(".")[1:]:
        found = getattr(found, part)
    return found


def overridden_keras_privates(cls: ast.ClassDef, samples: dict) -> list[str]:
    """The `self._x` names and `_x` methods of `cls` that are its Keras base's own private attributes."""
    keras_names = set()
    for base in filter(None, map(keras_base, cls.bases)):
        assert base in samples, f"{cls.name} derives from {base}: add an instance of it to keras_samples()"
        keras_names |= {name for name in dir(base) + dir(samples[base]) if is_private(name)}
    mine = {node.attr for node in ast.walk(cls) if isinstance(node, ast.Attribute) and is_self(node.value)}
    mine |= {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    return sorted(mine & keras_names)


def test_no_module_but_private_api_reaches_a_private_name():
    samples, found = keras_samples(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where == MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            reached = reaches_in(node)
            if reached:
                found.append(f"{where}:{node.lineno}: {reached}")
            if isinstance(node, ast.ClassDef):
                found += [f"{where}:{node.lineno}: class {node.name} uses Keras's own self.{name}"
                          for name in overridden_keras_privates(node, samples)]
    assert not found, (f"private names reached outside {MODULE}; reach them through a function there, listed in "
                       "its USES:\n  " + "\n  ".join(found))


def test_docs_list_is_the_modules():
    text = DOCS.read_text()
    start, end = "<!-- private API list: python -m keras_loss_recipes.runtime.private_api -->", \
        "<!-- end of private API list -->"
    assert start in text and end in text, f"{DOCS.relative_to(ROOT)} has lost its private API list's markers"
    listed = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert listed == private_api.markdown(), (
        f"{DOCS.relative_to(ROOT)}'s private API list is not {MODULE}'s USES: put the output of "
        "`python -m keras_loss_recipes.runtime.private_api` between its markers")
