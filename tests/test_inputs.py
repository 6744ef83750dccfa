"""Inputs that are not images (data.inputs=features|tokens): the checks, standardisation fitted on the training
split only, the CSV table, scikit-learn's tables, the models that take them, and one run of each kind."""
import json

import numpy as np
import pytest

from keras_loss_recipes.config.model_inputs import fill_vocabulary
from keras_loss_recipes.config.settings import validate
from keras_loss_recipes.data import load_splits
from keras_loss_recipes.data.inputs import FEATURES, IMAGES, TOKENS
from keras_loss_recipes.data.pipeline import model_inputs
from keras_loss_recipes.runtime.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def npz_data(compose, tmp_path, *overrides, **arrays):
    np.savez(tmp_path / "arrays.npz", **arrays)
    return compose("data=npz", f"data.path={tmp_path / 'arrays.npz'}", *overrides)


def shifted_features(rows: int = 120, seed: int = 0):
    """Two classes of 3 features; the test rows far off the training rows, so figures fitted on all rows
    would differ from the training split's."""
    rng = np.random.default_rng(seed)
    x = rng.normal([5.0, -2.0, 300.0], [2.0, 0.5, 50.0], size=(rows, 3))
    return x, np.arange(rows) % 2, x[:40] + [10.0, 10.0, 1000.0], np.arange(40) % 2


def test_standardisation_takes_its_figures_from_the_training_split_only(compose, tmp_path):
    x, y, x_test, y_test = shifted_features()
    arrays = dict(x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    raw = load_splits(npz_data(compose, tmp_path, "data.inputs=features", "data.standardize=false",
                               "data.val_examples=20", **arrays).data)
    done = load_splits(npz_data(compose, tmp_path, "data.inputs=features", "data.val_examples=20", **arrays).data)
    assert raw.inputs == done.inputs == FEATURES and done.x_train.dtype == np.float32
    np.testing.assert_array_equal(raw.x_test, x_test.astype(np.float32))  # off: the values as given
    mean, std = raw.x_train.astype(np.float64).mean(0), raw.x_train.astype(np.float64).std(0)
    np.testing.assert_allclose(done.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(done.x_train.std(0), 1, atol=1e-5)
    for split in ("x_val", "x_test"):  # the training split's figures, not their own
        np.testing.assert_allclose(getattr(done, split), (getattr(raw, split) - mean) / std, rtol=1e-5, atol=1e-5)
    assert done.x_test.mean() > 5  # the shift stays: the test rows were not standardised with their own figures


def test_a_capped_training_split_is_the_one_standardisation_is_fitted_on(compose, tmp_path):
    x, y, *_ = shifted_features()
    cfg = npz_data(compose, tmp_path, "data.inputs=features", "data.max_train_examples=30", x_train=x, y_train=y)
    splits = load_splits(cfg.data)
    assert splits.sizes()["train"] == 30
    np.testing.assert_allclose(splits.x_train.mean(0), 0, atol=1e-5)


def test_features_and_tokens_are_never_pixel_scaled(compose, tmp_path):
    ids = np.tile(np.arange(200, 206), (60, 1))  # integers above 255: pixels would be an error, ids are not
    tokens = load_splits(npz_data(compose, tmp_path, "data.inputs=tokens", x_train=ids, y_train=np.arange(60) % 2).data)
    assert tokens.inputs == TOKENS and tokens.x_train.dtype == np.int32
    np.testing.assert_array_equal(model_inputs(tokens.x_test, TOKENS), ids[: len(tokens.x_test)])
    whole = np.arange(60 * 4).reshape(60, 4) % 256  # integer features 0..255: numbers, not pixels
    features = load_splits(npz_data(compose, tmp_path, "data.inputs=features", "data.standardize=false",
                                    x_train=whole, y_train=np.arange(60) % 2).data)
    assert model_inputs(features.x_train, FEATURES).max() > 1
    assert model_inputs(np.full((1, 2, 2, 1), 255, np.uint8), IMAGES).max() == 1.0  # images: still scaled


@pytest.mark.parametrize("inputs, x_train, x_test, message", [
    ("features", [[1.0, np.nan], [2.0, 3.0]], None, r": train: row 0, feature 1 holds nan; features must be finite"),
    ("features", [[1.0, 2.0], [2.0, 3.0]], [[1.0, 2.0, 3.0]], r": test rows hold 3 features, training rows 2"),
    ("tokens", [[1, -4], [2, 3]], None, r": train: row 0 holds token id -4; ids must lie in 0\.\."),
    ("tokens", [[1.0, 2.5], [2.0, 3.0]], None, r": train: token ids of dtype float64; expected integer ids"),
    ("tokens", [[1, 2], [2, 3]], [[1, 2, 3]], r": test rows hold 3 tokens per sequence, training rows 2"),
    ("images", [[1, 2], [2, 3]], None, r"images have shape \(2, 2\);.* set data\.inputs=features"),
])
def test_bad_inputs_are_one_line(compose, tmp_path, inputs, x_train, x_test, message):
    arrays = dict(x_train=np.asarray(x_train), y_train=[0, 1])
    if x_test is not None:
        arrays.update(x_test=np.asarray(x_test), y_test=[0])
    with pytest.raises(UserError, match=message) as err:
        load_splits(npz_data(compose, tmp_path, f"data.inputs={inputs}", **arrays).data)
    assert "\n" not in str(err.value)


CSV = "width,colour,height,species\n" + "".join(
    f"{1 + i % 7},{i % 3},{10 + i},{['setosa', 'versicolor', 'virginica'][i % 3]}\n" for i in range(60))


def test_a_csv_table_gives_features_and_its_label_columns_values_as_classes(compose, tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    cfg = compose("data=csv", f"data.path={tmp_path / 't.csv'}", "data.label=species", "data.standardize=false",
                  "data.test_examples=12", "data.val_examples=6", "model=mlp")
    validate(cfg)
    splits = load_splits(cfg.data)
    assert splits.class_names == ["setosa", "versicolor", "virginica"] and splits.sizes() == {
        "train": 42, "val": 6, "test": 12}
    assert splits.x_train.shape == (42, 3) and splits.inputs == FEATURES
    # Each row's label is its species: row i (height 10 + i) is class i % 3.
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        np.testing.assert_array_equal(y, (x[:, 2].astype(int) - 10) % 3)


@pytest.mark.parametrize("label, text, message", [
    ("kind", CSV, r"^data\.label=kind: no such column in data\.path=.*; name the label column, one of: width, "
                  r"colour, height, species$"),
    ("species", "a,species\n1,x\n,y\n", r"^data\.path=.*: column a, line 3 is empty; features must be finite"),
    ("species", "a,species\n1,x\nbig,y\n", r"^data\.path=.*: column a, line 3 holds 'big'; features must be numbers"),
])
def test_a_bad_csv_is_one_line(compose, tmp_path, label, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(UserError, match=message):
        load_splits(compose("data=csv", f"data.path={tmp_path / 't.csv'}", f"data.label={label}").data)


@pytest.mark.parametrize("name, sizes, features, classes", [
    ("breast_cancer", {"train": 398, "val": 57, "test": 114}, 30, ["malignant", "benign"]),
    ("wine", {"train": 124, "val": 18, "test": 36}, 13, ["class_0", "class_1", "class_2"]),
])
def test_scikit_learns_tables(compose, name, sizes, features, classes):
    splits = load_splits(compose(f"data={name}").data)
    assert splits.sizes() == sizes and splits.x_train.shape[1] == features and splits.class_names == classes
    for labels in (splits.y_train, splits.y_val, splits.y_test):  # stratified: every class in every split
        assert set(labels) == set(range(len(classes)))


@pytest.mark.parametrize("overrides, message", [
    (["data=wine"], "^model cnn takes images, but data.inputs=features (N, F): use model=mlp$"),
    (["data=npz", "data.inputs=tokens", "model=mlp"],
     "^model mlp takes images or features, but data.inputs=tokens (N, T): use model=embedding_bag$"),
    (["model=embedding_bag"], "^model embedding_bag takes tokens, but data.inputs=images"),
])
def test_a_model_that_cannot_take_the_inputs_is_one_line(compose, overrides, message):
    with pytest.raises(UserError) as err:
        validate(compose(*overrides))
    assert err.match(message.replace("(", r"\(").replace(")", r"\)"))


def test_the_vocabulary_comes_from_the_token_ids(compose, tmp_path):
    ids = np.tile(np.arange(8), (40, 1))
    cfg = npz_data(compose, tmp_path, "data.inputs=tokens", "model=embedding_bag", x_train=ids,
                   y_train=np.arange(40) % 2)
    splits = load_splits(cfg.data)
    fill_vocabulary(cfg.model, splits)
    assert cfg.model.vocabulary_size == 8
    cfg.model.vocabulary_size = 5
    with pytest.raises(UserError, match=r"^model.vocabulary_size=5: data=npz holds token ids up to 7; set it to "
                                        r"at least 8"):
        fill_vocabulary(cfg.model, splits)


@pytest.mark.slow(seconds=40)
def test_a_token_run_and_a_feature_run_end_to_end(train_cli, tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    common = ["trainer=quick", "trainer.batch_size=16", "trainer.verbose=0", "telemetry=off"]
    runs = {"tokens": ["data=npz", "data._target_=examples.token_sentiment.load", "+data.rows=300",
                       "data.inputs=tokens", "model=embedding_bag"],
            "features": ["data=csv", "data.path=t.csv", "data.label=species", "model=mlp"]}
    for kind, args in runs.items():
        result = train_cli(*args, *common, f"hydra.run.dir={kind}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        metrics = json.loads((tmp_path / kind / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["inputs"] == kind and metrics["epochs_completed"] == 2
    assert metrics["input_shape"] == [3]
    tokens = json.loads((tmp_path / "tokens" / "metrics.json").read_text())
    assert tokens["input_shape"] == [40] and tokens["config"]["model"]["vocabulary_size"] == 500


@pytest.mark.slow(seconds=10)
def test_a_missing_label_column_stops_the_run_with_exit_code_2_and_no_run_directory(train_cli, tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    result = train_cli("data=csv", "data.path=t.csv", "data.label=kind", "model=mlp", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data.label=kind: no such column in data.path=t.csv; name the label column, one of: width, colour, "
        "height, species")
    assert not list(tmp_path.glob("runs/*/*"))


def test_a_recipe_that_loads_a_checkpoint_does_not_ask_model_to_take_the_inputs(compose):
    validate(compose("recipe=evaluate", "data=wine"))  # model=cnn is the default, and unused: no error
