"""Your model, your data: a user's builder or model factory, keras.applications, arrays, folders, callables."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_loss_recipes.recipes import train as train_recipe
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import ROOT, TINY, project_env

SHADOWED_NAMES = '''

def scaled(inputs, num_classes, hidden):
    """Imports the user's own losses, models, data and recipes modules, beside this file."""
    import data
    import models
    import recipes
    from losses import scale

    assert [m.WHOSE for m in (data, models, recipes)] == ["the user's data", "the user's models", "the user's recipes"]
    x = layers.Dense(scale(hidden), activation="relu")(layers.Flatten()(inputs))
    return layers.Dense(num_classes)(x)
'''
USER_MODELS = '''
import keras
from keras import layers


def build(inputs, num_classes, hidden=8):
    """The builder form: the logits tensor of `inputs`."""
    x = layers.Flatten()(inputs)
    x = layers.Dense(hidden, activation="relu")(x)
    return layers.Dense(num_classes)(x)


def softmax_model(input_shape, num_classes):
    """The factory form: a whole model that ends in a softmax, as keras.io examples do."""
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(8, activation="relu"),
                             layers.Dense(num_classes, activation="softmax", name="probs")])


def softmax_then_reshape(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = layers.Dense(num_classes)(layers.Flatten()(inputs))
    x = layers.Softmax(name="probs")(x)
    return keras.Model(inputs, layers.Reshape((num_classes,))(x))


def lambda_head(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = layers.Dense(num_classes)(layers.Flatten()(inputs))
    return keras.Model(inputs, layers.Lambda(lambda t: keras.ops.softmax(t))(x))


def fixed_input(num_classes):
    return keras.Sequential([keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(num_classes)])


def seven_wide(inputs, num_classes):
    return layers.Dense(7)(layers.Flatten()(inputs))


def two_outputs(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    return keras.Model(inputs, [layers.Dense(num_classes)(x), layers.Dense(1)(x)])


not_callable = 3


@keras.saving.register_keras_serializable(package="my_models")
class OptionsOnlyClassifier(keras.Model):
    """As keras_hub's classifiers: functional once built, but its config holds options, not a graph."""

    def __init__(self, num_classes=10, **kwargs):
        inputs = keras.Input((28, 28, 1))
        outputs = layers.Dense(num_classes, activation="softmax", name="probs")(layers.Flatten()(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.num_classes = num_classes

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name}


def options_only(num_classes):
    return OptionsOnlyClassifier(num_classes=num_classes)


def keras_io_convnet(input_shape, num_classes):
    """keras.io's simple MNIST convnet as its example writes it: a whole model, its softmax Dense last (the
    resumed run of tests/test_exact_resume.py)."""
    from keras_loss_recipes.training.models import convnet_layers

    return keras.Sequential([keras.Input(input_shape), *convnet_layers(num_classes, head="softmax")])
'''

USER_DATA = '''
import numpy as np


def load(classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(240) % classes
    x = (rng.integers(0, 60, size=(240, 12, 12)) + 60 * y[:, None, None]).astype(np.uint8)
    return x[:200], y[:200], x[200:], y[200:]
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """my_models.py and my_data.py in a directory of the user's, importable as from where they run."""
    home = tmp_path / "user"
    home.mkdir()
    (home / "my_models.py").write_text(USER_MODELS)
    (home / "my_data.py").write_text(USER_DATA)
    monkeypatch.syspath_prepend(str(home))
    for name in ("my_models", "my_data"):
        sys.modules.pop(name, None)
    return home


def train(compose, run_dir, *overrides):
    return train_recipe.run(compose(*TINY, *overrides), run_dir)


def test_a_builder_of_yours_trains_and_the_mlp_configs_options_never_reach_it(user_code, compose, tmp_path, caplog):
    with caplog.at_level("INFO"):
        m = train(compose, tmp_path / "run", "model._target_=my_models.build", "+model.hidden=4")
    assert m["status"] == "ok" and m["model"] == "my_models.build" and m["removed_head"] is None
    assert m["params"] == 28 * 28 * 4 + 4 + 4 * 10 + 10  # hidden=4 reached the builder
    # configs/model/mlp.yaml's hidden_units is the mlp's: not passed, not recorded, not mentioned.
    assert m["config"]["model"] == {"_target_": "my_models.build", "name": "my_models.build", "hidden": 4}
    assert not any("hidden_units" in r.getMessage() for r in caplog.records)


def test_the_default_models_options_stay_where_its_target_does(compose):
    assert compose("model._target_=my_models.build").model.keys() == {"_target_", "name"}
    assert compose("model._target_=my_models.build", "model.dropout=0.2").model.dropout == 0.2  # yours, kept
    assert compose("model._target_=keras_loss_recipes.training.models.cnn").model.dropout == 0.5  # the file's own
    assert compose("model=mlp").model.hidden_units == 128


def test_a_whole_model_loses_its_softmax_so_that_the_loss_decides(user_code, compose, tmp_path, caplog):
    with caplog.at_level("INFO"):
        m = train(compose, tmp_path / "run", "model._target_=my_models.softmax_model")
    assert m["status"] == "ok" and m["loss_path"] == "fused_logits"
    assert m["removed_head"] == {"kind": "softmax", "layer": "probs", "class": "Dense"}
    [line] = [r.getMessage() for r in caplog.records if "took off" in r.getMessage()]
    assert line == ("model: took off the softmax head of my_models.softmax_model (layer 'probs', Dense), so that "
                    "loss= decides the loss from its logits")
    import keras

    # The saved model computes what was trained: logits, no softmax left in the user's layer.
    saved = keras.models.load_model(tmp_path / "run" / "last.keras")
    logits = saved.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
    assert not np.allclose(logits.sum(axis=1), 1.0)
    from tests.test_train import text_summaries

    [summary] = text_summaries(tmp_path / "run", "run/summary")
    assert "its softmax head (layer `probs`, Dense) was taken off" in summary


def test_a_softmax_behind_a_reshape_is_found_and_taken_off(user_code, compose, tmp_path):
    m = train(compose, tmp_path / "run", "model._target_=my_models.softmax_then_reshape")
    assert m["status"] == "ok" and m["removed_head"] == {"kind": "softmax", "layer": "probs", "class": "Softmax"}


@pytest.mark.parametrize("target, message", [
    ("my_models.lambda_head", "cannot find its logits: the output comes from layer 'lambda' (Lambda)"),
    ("my_models.seven_wide", "its output has shape (None, 7); the data has 10 classes"),
    ("my_models.fixed_input", "the model takes inputs of shape (32, 32, 3); the data's images are (28, 28, 1)"),
    ("my_models.two_outputs", "the model has 2 outputs; a classifier here has one"),
    ("my_models.nope", "module 'my_models' has no attribute 'nope'"),
    ("my_models.not_callable", "'not_callable' is not callable"),
    ("no_such_package.build", "module 'no_such_package' not found"),
])
def test_a_model_that_cannot_be_trained_is_one_clear_error(user_code, compose, tmp_path, target, message):
    with pytest.raises(UserError) as err:
        train(compose, tmp_path / "run", f"model._target_={target}")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"model._target_={target}")  # named as the user wrote it


def test_arrays_of_yours_from_an_npz_file_and_from_a_callable(user_code, compose, tmp_path):
    sys.path.insert(0, str(user_code))
    from my_data import load

    x_train, y_train, x_test, y_test = load()
    np.savez(tmp_path / "mine.npz", x_train=x_train, y_train=y_train)  # no test arrays: split off
    from_file = train(compose, tmp_path / "npz", "data=npz", f"data.path={tmp_path / 'mine.npz'}")
    assert from_file["status"] == "ok" and from_file["input_shape"] == [12, 12, 1] and from_file["num_classes"] == 3
    assert from_file["data"] == "npz"
    from_code = train(compose, tmp_path / "callable", "data._target_=my_data.load", "data.val_examples=auto")
    assert from_code["status"] == "ok" and from_code["data"] == "my_data.load" and from_code["num_classes"] == 3


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((20, 8, 8), np.uint8)}, "no array y_train (it holds: x_train)"),
    ({"x_train": np.zeros((20, 8, 8), np.uint8), "y_train": np.arange(20) % 2, "x_test": np.zeros((4, 8, 8))},
     "no array y_test"),
    ({"x_train": np.zeros((20, 8, 8), np.float32) + 256.5, "y_train": np.arange(20) % 2},
     "x_train[0] holds 256.5; float images must lie in [0, 1] (already scaled) or [0, 255] (pixels)"),
])
def test_a_bad_npz_file_is_one_clear_error(compose, tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        train(compose, tmp_path / "run", "data=npz", f"data.path={tmp_path / 'bad.npz'}")


def test_labels_outside_the_classes_are_one_clear_error(compose, tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((30, 8, 8), np.uint8), y_train=np.arange(30) % 3)
    with pytest.raises(UserError, match=r"labels range 0..2; expected 0..1 for 2 classes"):
        train(compose, tmp_path / "run", "data=npz", f"data.path={tmp_path / 'bad.npz'}", "data.num_classes=2")


def write_folder(root, classes=3, per_class=12, size=(32, 32), mode="RGB", sizes=None):
    """A folder of generated PNGs, one subfolder per class, each class its own colour."""
    from PIL import Image

    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (sizes[i % len(sizes)] if sizes else size)
            pixels = np.full((*shape, 3), 40 + 80 * c, np.uint8)
            pixels[i % shape[0], :, :] = 255
            Image.fromarray(pixels).convert(mode).save(root / f"class_{c}" / f"{i:03d}.png")
    return root


@pytest.mark.slow(seconds=25)
def test_mobilenet_from_keras_applications_on_a_folder_of_rgb_images_below_its_minimum_size(compose, tmp_path, caplog):
    """One MobileNet run (its training step is the cost): a folder of 28 x 28 RGB images, below the
    architecture's 32 x 32, resized in the model."""
    import keras

    folder = write_folder(tmp_path / "images", size=(28, 28))
    base = ["model=keras_app", "model.architecture=MobileNetV3Small", "data=folder", f"data.dir={folder}",
            "data.color_mode=rgb", "data.val_examples=6", "data.test_examples=6", "trainer.batch_size=8",
            "trainer.epochs=1", "trainer.verbose=0"]
    from keras_loss_recipes import losses

    # One run: the head comes off whatever the loss (the loss then decides, as for any model of yours).
    with caplog.at_level("INFO"):
        m = train_recipe.run(compose(*base, "loss=softmax_ce"), tmp_path / "run")
    assert m["status"] == "ok" and m["model"] == "MobileNetV3Small"
    assert m["loss_path"] == losses.formulation("softmax_ce").expected_path("tensorflow")
    assert m["input_shape"] == [28, 28, 3] and m["class_names"] == ["class_0", "class_1", "class_2"]
    assert m["removed_head"] == {"kind": "softmax", "layer": "predictions", "class": "Activation"}
    assert sum("model: took off the softmax head of MobileNetV3Small (layer 'predictions', "
               "Activation)" in r.getMessage() for r in caplog.records) == 1
    saved = keras.models.load_model(tmp_path / "run" / "last.keras")
    resize = saved.get_layer("MobileNetV3Small").get_layer("resize_to_minimum")
    assert (resize.get_config()["height"], resize.get_config()["width"]) == (32, 32)


@pytest.mark.parametrize("layout, message", [
    ("empty", "0 class folder(s) with images (none); a classifier needs at least 2"),
    ("one_class", "1 class folder(s) with images (class_0)"),
    ("mixed_sizes", "images of mixed sizes"),
])
def test_a_folder_that_cannot_be_trained_on_is_one_clear_error(compose, tmp_path, layout, message):
    folder = tmp_path / "images"
    folder.mkdir()
    if layout == "one_class":
        write_folder(folder, classes=1, per_class=3)
    elif layout == "mixed_sizes":
        write_folder(folder, classes=2, per_class=4, sizes=[(16, 16), (20, 16)])
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(compose, tmp_path / "run", "data=folder", f"data.dir={folder}")


def test_mixed_sizes_train_once_image_size_is_set(compose, tmp_path):
    folder = write_folder(tmp_path / "images", classes=2, per_class=20, sizes=[(16, 16), (20, 16)])
    m = train(compose, tmp_path / "run", "data=folder", f"data.dir={folder}", "data.image_size=[14,14]")
    assert m["status"] == "ok" and m["input_shape"] == [14, 14, 1] and m["num_classes"] == 2


@pytest.mark.slow(seconds=45)
def test_train_py_with_a_model_of_yours_from_your_own_directory_and_a_sweep_across_two_models(tmp_path):
    """As a user types it: their module beside them, not in the project; bad input exits 2 and leaves nothing."""
    (tmp_path / "my_models.py").write_text(USER_MODELS)
    env = project_env()

    def train_py(*args):
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *args, *TINY], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    # A config group of yours beside your code (--config-dir): the installed command's run below trains one.
    bad = train_py("model._target_=my_models.seven_wide", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: model._target_=")
    assert not (tmp_path / "bad").exists()
    sweep = tmp_path / "sweep"
    done = train_py("-m", "model._target_=keras_loss_recipes.training.models.mlp,my_models.build",
                    "loss=sparse_from_logits,softmax_ce", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert sorted((m["model"], m["loss"]) for m in runs) == [
        ("mlp", "softmax_ce"), ("mlp", "sparse_from_logits"),
        ("my_models.build", "softmax_ce"), ("my_models.build", "sparse_from_logits")]
    assert {m["status"] for m in runs} == {"ok"}
    from tests.test_sweeps import report_rows

    groups = report_rows((sweep / "comparison.md").read_text())
    assert sorted(groups) == sorted(f"loss={loss}, model._target_={target}, model={name}"
                                    for loss in ("softmax_ce", "sparse_from_logits")
                                    for target, name in (("my_models.build", "my_models.build"),
                                                         ("keras_loss_recipes.training.models.mlp", "mlp")))
    assert {row["ok"] for row in groups.values()} == {"1"}
    print("\n" + (sweep / "comparison.md").read_text())


def test_the_head_finder_sees_through_shape_only_layers_in_a_saved_graph():
    from keras_loss_recipes.training.heads import find_head

    def layer(name, class_name, inbound, **config):
        node = [{"args": [{"config": {"keras_history": [inbound, 0, 0]}}]}] if inbound else []
        return {"class_name": class_name, "config": {"name": name, **config}, "inbound_nodes": node}

    model = {"class_name": "Functional", "config": {"name": "m", "output_layers": ["reshape", 0, 0], "layers": [
        {"class_name": "InputLayer", "config": {"name": "in"}},
        layer("dense", "Dense", "in", units=10, activation="linear"),
        layer("probs", "Softmax", "dense"),
        layer("drop", "Dropout", "probs", rate=0.0),
        layer("reshape", "Reshape", "drop", target_shape=[10])]}}
    head = find_head(model)
    assert (head.kind, head.layer, head.logits_from) == ("softmax", "probs", "dense")
    assert [a["class_name"] for a in head.after] == ["Dropout", "Reshape"]
    # Logits behind shape-only layers (a linear Activation among them): the layer without activation.
    model["config"]["layers"][2] = layer("probs", "Activation", "dense", activation="linear")
    head = find_head(model)
    assert (head.kind, head.layer, head.width) == ("logits", "dense", 10)
    assert [a["class_name"] for a in head.after] == ["Activation", "Dropout", "Reshape"]
    # Shape-only layers with no classifier head behind them: the output layer itself, as before.
    model["config"]["layers"][1] = layer("dense", "Dense", "in", units=10, activation="relu")
    assert find_head(model).kind == "unknown" and find_head(model).layer == "reshape"


@pytest.mark.slow(seconds=20)
def test_the_installed_command_trains_your_model_from_a_directory_outside_the_repository(tmp_path):
    """`pip install` of the project gives `recipes-train`, with the configs inside the install: a user's
    model and config group, in a directory of theirs, train with no clone in sight."""
    import os
    import shutil
    import sysconfig
    import zipfile

    source = tmp_path / "source"
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for folder in ("configs", "keras_loss_recipes", "hydra_plugins"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("keras_loss_recipes-*.whl")
    configs = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    packed = {n.split("/share/keras-loss-recipes/configs/", 1)[1] for n in zipfile.ZipFile(wheel).namelist()
              if "/share/keras-loss-recipes/configs/" in n}
    assert packed == configs  # every config, in its folder
    # A fresh environment with the project installed from the wheel; its dependencies are this one's.
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    fresh_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    Path(fresh_site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    home = tmp_path / "user"
    (home / "my_configs" / "model").mkdir(parents=True)
    # Modules of the user's with the commonest names in ML projects: theirs, not the installed project's.
    for name in ("losses", "models", "data", "recipes"):
        (home / f"{name}.py").write_text(f'WHOSE = "the user\'s {name}"\n')
    (home / "losses.py").write_text('WHOSE = "the user\'s losses"\n\n\ndef scale(n):\n    return 2 * n\n')
    (home / "my_models.py").write_text(USER_MODELS + SHADOWED_NAMES)
    (home / "my_configs" / "model" / "small.yaml").write_text("_target_: my_models.scaled\nname: small\nhidden: 3\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    where = subprocess.run([str(python), "-c", "import keras_loss_recipes.config.compose as c; print(c.__file__, c.config_dir())"],
                           cwd=home, env=env, capture_output=True, text=True, timeout=120).stdout.split()
    assert where == [f"{fresh_site}/keras_loss_recipes/config/compose.py", f"{env_dir}/share/keras-loss-recipes/configs"]
    done = subprocess.run([str(env_dir / "bin" / "recipes-train"), "--config-dir", "my_configs", "model=small",
                           *(a for a in TINY if not a.startswith("model=")), "hydra.run.dir=run"],
                          cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((home / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["model"] == "small" and (home / "run" / "train.log").is_file()
    assert metrics["params"] == 28 * 28 * 6 + 6 + 6 * 10 + 10  # hidden=3, doubled by the user's losses.scale


# Your model killed and resumed, bit for bit, then recipe=evaluate on its run directory: the TensorFlow run of
# tests/test_exact_resume.py, on keras_io_convnet above.


def test_a_folder_is_streamed_from_disk_a_batch_at_a_time(compose, tmp_path):
    from PIL import Image

    from keras_loss_recipes.data import load_splits
    from keras_loss_recipes.data.pipeline import make_dataset
    from keras_loss_recipes.data.splits import is_streamed

    folder = write_folder(tmp_path / "images", classes=2, per_class=10, size=(9, 7))
    splits = load_splits(compose("data=folder", f"data.dir={folder}", "data.val_examples=4",
                                 "data.test_examples=4").data)
    assert all(is_streamed(x) for x in (splits.x_train, splits.x_val, splits.x_test))  # nothing read yet
    assert splits.x_train.shape == (12, 9, 7, 1) and splits.sizes() == {"train": 12, "val": 4, "test": 4}
    direct = np.stack([np.asarray(Image.open(f).convert("L")) for f in splits.x_train.files[:3]])[..., None]
    np.testing.assert_array_equal(splits.x_train[np.arange(3)], direct)
    batches = make_dataset(splits.x_train, splits.y_train, batch_size=5, shuffle=False, seed=0)
    images, labels = batches[0]
    assert images.dtype == np.float32 and images.shape == (5, 9, 7, 1)
    np.testing.assert_allclose(images[:3], direct / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, splits.y_train[:5])


def test_the_memory_figures_in_the_docs_are_the_benchmarks_output_and_show_the_streaming():
    """docs/your_model.md's table is the rendering of what benchmarks/folder_memory.py measured
    (docs/folder_memory.json): a figure edited on the page alone, or a benchmark run whose page was not
    written, fails here."""
    from benchmarks import folder_memory

    result = json.loads(folder_memory.DATA.read_text())
    assert folder_memory.page_block(folder_memory.PAGE.read_text()) == folder_memory.render(result), \
        "run: python benchmarks/folder_memory.py --render"
    runs = [result["figures"][name] for name in ("folder_5k", "folder_60k", "npz_60k")]
    assert [run["images"] for run in runs] == [5000, 60000, 60000]
    folder_5k, folder_60k, arrays_60k = (run["peak_rss_mb"] for run in runs)
    # Twelve times the images: the streamed folder's peak grows far less than the arrays' does.
    assert folder_60k - folder_5k < (arrays_60k - folder_5k) / 2


def test_a_model_whose_config_holds_options_not_a_graph_is_read_once_built(user_code, compose, tmp_path):
    """A keras_hub-style classifier: trained (its softmax found in the built graph and taken off), and
    examined by the doctor from its saved file, which it loads where the model's module is importable."""
    import keras

    from keras_loss_recipes.training.heads import read_saved_model

    m = train(compose, tmp_path / "run", "model._target_=my_models.options_only")
    assert m["status"] == "ok" and m["removed_head"] == {"kind": "softmax", "layer": "probs", "class": "Dense"}
    import my_models

    path = tmp_path / "options_only.keras"
    my_models.options_only(10).save(path)
    assert "layers" not in json.loads(__import__("zipfile").ZipFile(path).read("config.json"))["config"]
    head = read_saved_model(path).head
    assert (head.kind, head.layer, head.width) == ("softmax", "probs", 10)
    keras.saving.get_custom_objects().pop("my_models>OptionsOnlyClassifier", None)


def test_keras_app_takes_one_channel_images_below_the_architectures_minimum():
    """MNIST's 28 x 28 x 1 into MobileNet, built (the run on a folder above trains one): resized in the model."""
    from keras_loss_recipes.training.zoo import keras_application

    model = keras_application((28, 28, 1), 10, "MobileNetV3Small")
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    resize = model.get_layer("resize_to_minimum")
    assert (resize.get_config()["height"], resize.get_config()["width"]) == (32, 32)
