"""Models of the user's own: a keras_hub classifier, subclassed models, a model of the flat image. Each
trains, its head is found and taken off, and what the run saves gives back the logits the run measured:
in plain Keras (this project not importable), through recipe=evaluate, and to the loss doctor."""
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_loss_recipes.recipes import evaluate
from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import TINY, needs_module

USER_MODELS = '''
import keras
from keras import layers


def hub_resnet(input_shape, num_classes):
    """A real keras_hub classifier, tiny, from scratch: its head a softmax Dense that its config rebuilds."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False, image_shape=tuple(input_shape))
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=num_classes,
                                                  activation="softmax")


class MyModel(keras.Model):
    """The seed notes' form: a softmax Dense applied in call()."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.flatten = layers.Flatten()
        self.hidden = layers.Dense(16, activation="relu")
        self.out = layers.Dense(num_classes, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(self.flatten(x)))


def my_model(num_classes):
    return MyModel(num_classes)


@keras.saving.register_keras_serializable(package="my_models")
class LogitsModel(keras.Model):
    """A subclass that returns logits, registered: a .keras file gives it back."""

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.flatten = layers.Flatten()
        self.out = layers.Dense(num_classes)

    def call(self, x):
        return self.out(self.flatten(x))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class OwnSoftmax(keras.Model):
    """Its softmax is an op of call(), not a layer: no head to take off."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.flatten = layers.Flatten()
        self.out = layers.Dense(num_classes)

    def call(self, x):
        return keras.ops.softmax(self.out(self.flatten(x)))


def build(inputs, num_classes):
    """The builder form: the logits tensor of `inputs`."""
    return layers.Dense(num_classes)(layers.Dense(16, activation="relu")(layers.Flatten()(inputs)))


def factory(input_shape, num_classes):
    """The factory form, as keras.io writes it: softmax and all."""
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(16, activation="relu"),
                             layers.Dense(num_classes, activation="softmax")])


def flat(num_classes):
    return keras.Sequential([layers.Dense(16, activation="relu", input_shape=(784,)),
                             layers.Dense(num_classes, activation="softmax")])


def flat_softmax_layer(num_classes):
    return keras.Sequential([keras.Input((784,)), layers.Dense(16, activation="relu"), layers.Dense(num_classes),
                             layers.Softmax()])


def flat_wrong_size(num_classes):
    return keras.Sequential([keras.Input((100,)), layers.Dense(num_classes)])
'''

# Loads saved models in a Python that cannot import this project (nor Hydra): only Keras and the user's code.
PLAIN_KERAS = '''
import importlib, importlib.abc, json, sys
import numpy as np


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras_loss_recipes", "hydra", "hydra_plugins", "omegaconf", "tests"):
            raise ImportError(f"{name} may not be imported here")


sys.meta_path.insert(0, Refuse())
import keras
import my_models  # the user's own classes, registered as they import

images = np.load(sys.argv[1])
logits = {path: keras.models.load_model(path, compile=False).predict(images, verbose=0)
          for path in json.loads(sys.argv[2])}
np.savez(sys.argv[3], **{str(i): logits[p] for i, p in enumerate(json.loads(sys.argv[2]))})
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    home = tmp_path / "user"
    home.mkdir()
    (home / "my_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(home))
    sys.modules.pop("my_models", None)
    yield home
    import keras

    keras.saving.get_custom_objects().pop("my_models>LogitsModel", None)


def train_measuring(compose, run_dir, monkeypatch, *overrides) -> tuple[dict, np.ndarray]:
    """The run's record, and the test logits it measured its figures on."""
    measured = []
    from keras_loss_recipes.evaluation import held_out

    original = held_out.all_logits
    monkeypatch.setattr(held_out, "all_logits", lambda *a: measured.append(original(*a)) or measured[-1])
    metrics = train_recipe.run(compose(*TINY, *overrides), run_dir)
    return metrics, measured[0]


def scaled_test_images(compose):
    from keras_loss_recipes.data import load_splits
    from keras_loss_recipes.data.pipeline import scale_images

    return scale_images(load_splits(compose(*TINY).data).x_test)


def evaluated(compose, checkpoint, out_dir) -> dict:
    return evaluate.run(compose("recipe=evaluate", f"checkpoint={checkpoint}"), out_dir)


def same_figures(run: dict, again: dict) -> None:
    for key in ("test_accuracy", "test_exact_ce", "test_ece"):
        assert round(again[key], 4) == round(run[key], 4), key


@pytest.mark.slow(seconds=55)
def test_every_form_of_your_model_loads_in_plain_keras_to_the_logits_its_run_measured(
        user_code, compose, tmp_path, monkeypatch):
    needs_module("keras_hub", "pip install keras-hub")
    from keras_loss_recipes.training.heads import read_saved_model

    hub, hub_logits = train_measuring(compose, tmp_path / "hub", monkeypatch, "model._target_=my_models.hub_resnet")
    assert hub["status"] == "ok"
    assert hub["removed_head"] == {"kind": "softmax", "layer": "predictions", "class": "Dense"}
    sub, sub_logits = train_measuring(compose, tmp_path / "sub", monkeypatch, "model._target_=my_models.LogitsModel")
    assert sub["status"] == "ok" and sub["removed_head"] is None and sub["test_model"] == "last.keras"
    forms = {"builder": "my_models.build", "factory": "my_models.factory"}
    more = {form: train_measuring(compose, tmp_path / form, monkeypatch, f"model._target_={target}")
            for form, target in forms.items()}
    assert more["factory"][0]["removed_head"]["kind"] == "softmax"
    # Loaded where only Keras and the user's code import: the logits the run measured.
    np.save(tmp_path / "images.npy", scaled_test_images(compose))
    runs = ("hub", "sub", *forms)
    files = [str(tmp_path / run / name) for run in runs for name in ("last.keras", "best.keras")]
    done = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(tmp_path / "images.npy"), json.dumps(files),
                           str(tmp_path / "logits.npz")], cwd=user_code, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(user_code),
                                            "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = np.load(tmp_path / "logits.npz")
    measured_logits = [logits for logits in (hub_logits, sub_logits, *(m[1] for m in more.values()))
                       for _ in ("last", "best")]  # one epoch: best is last
    for i, measured in enumerate(measured_logits):
        assert np.max(np.abs(loaded[str(i)] - measured)) <= 1e-5, files[i]
    assert not np.allclose(loaded["0"].sum(axis=1), 1.0)  # logits, not the softmax the classifier had
    # recipe=evaluate: the run's own figures; the doctor reads the saved file's head.
    same_figures(hub, evaluated(compose, tmp_path / "hub", tmp_path / "hub_eval"))
    head = read_saved_model(tmp_path / "hub" / "last.keras").head
    assert (head.kind, head.layer, head.width) == ("logits", "predictions", 10)


def test_the_seed_notes_subclassed_model_trains_and_its_weights_give_back_its_figures(
        user_code, compose, tmp_path, monkeypatch, caplog):
    import keras

    from keras_loss_recipes.recipes.doctor import model_file

    with caplog.at_level("INFO"):
        m, logits = train_measuring(compose, tmp_path / "run", monkeypatch, "model._target_=my_models.my_model")
    assert m["status"] == "ok" and m["removed_head"]["kind"] == "softmax" and m["removed_head"]["class"] == "Dense"
    assert sorted(p.name for p in (tmp_path / "run").glob("*.weights.h5")) == ["best.weights.h5", "last.weights.h5"]
    assert not list((tmp_path / "run").glob("*.keras")) and m["test_model"] == "last.weights.h5"
    [line] = [r.getMessage() for r in caplog.records if "saved as its weights" in r.getMessage()]
    assert "the class is not registered" in line and "my_models.MyModel" in line
    # The user's class takes the weights; its head made linear again, it gives the run's logits.
    import my_models

    again = my_models.MyModel(10)
    images = scaled_test_images(compose)
    again(images[:1])
    again.load_weights(tmp_path / "run" / "last.weights.h5")
    again.out.activation = keras.activations.get("linear")
    assert np.max(np.abs(again.predict(images, verbose=0) - logits)) <= 1e-5
    same_figures(m, evaluated(compose, tmp_path / "run", tmp_path / "eval"))
    with pytest.raises(UserError, match="the doctor needs the model's class"):
        model_file(tmp_path / "run" / "last.weights.h5")


def test_a_subclass_whose_softmax_is_no_layer_is_one_line_that_says_return_logits(user_code, compose, tmp_path):
    with pytest.raises(UserError) as err:
        train_recipe.run(compose(*TINY, "model._target_=my_models.OwnSoftmax"), tmp_path / "run")
    assert "Return the logits from call()" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("target, head_class", [("flat", "Dense"), ("flat_softmax_layer", "Softmax")])
def test_a_model_of_the_flat_image_gets_the_images_flattened(user_code, compose, tmp_path, caplog, target,
                                                            head_class):
    with caplog.at_level("INFO"):
        m = train_recipe.run(compose(*TINY, f"model._target_=my_models.{target}"), tmp_path / "run")
    assert m["status"] == "ok" and m["removed_head"]["kind"] == "softmax" and m["removed_head"]["class"] == head_class
    assert f"model: my_models.{target} takes inputs of shape (784,): the images (28, 28, 1) are flattened to it" in [
        r.getMessage() for r in caplog.records]
    with pytest.raises(UserError, match=r"takes inputs of shape \(100,\); the data's images are \(28, 28, 1\)"):
        train_recipe.run(compose(*TINY, "model._target_=my_models.flat_wrong_size"), tmp_path / "wrong")


def test_evaluate_names_the_package_a_saved_model_needs_that_is_not_installed(tmp_path, monkeypatch):
    import importlib.util
    import zipfile

    path = tmp_path / "hub.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"module": "keras", "class_name": "Functional", "config": {
            "layers": [{"module": "keras_hub.src.models.resnet.resnet_backbone", "class_name": "ResNetBackbone"}]}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name, *a))
    with pytest.raises(UserError) as err:
        evaluate.load_model(path)
    assert str(err.value).endswith("which is not installed here: pip install keras-hub")
