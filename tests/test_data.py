"""Data sources: the embedded split, the IDX parser, TFDS through mock data, arrays of yours (scale, class names)."""
import gzip
import logging
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from keras_loss_recipes.data import load_splits
from keras_loss_recipes.data.idx import load_idx, parse_idx
from keras_loss_recipes.data.pipeline import make_dataset
from keras_loss_recipes.data.splits import balanced_subset, stratified_split
from keras_loss_recipes.data.validation_split import auto_val_examples
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import needs_module


def embedded_cfg(**overrides):
    base = dict(name="mnist_embedded", _target_="keras_loss_recipes.data.embedded.load_embedded", val_examples=500, test_examples=500,
                split_seed=0, max_train_examples=None)
    return OmegaConf.create({**base, **overrides})


@pytest.fixture(scope="session")
def embedded():
    return load_splits(embedded_cfg())


def test_embedded_split_sizes_and_balance(embedded):
    assert embedded.sizes() == {"train": 4000, "val": 500, "test": 500}
    for labels, per_class in [(embedded.y_train, 400), (embedded.y_val, 50), (embedded.y_test, 50)]:
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
    assert embedded.x_train.shape == (4000, 28, 28, 1) and embedded.x_train.dtype == np.uint8


def test_embedded_splits_are_disjoint_and_shuffled(embedded):
    def keys(x):
        return {row.tobytes() for row in x.reshape(len(x), -1)}

    train, val, test = keys(embedded.x_train), keys(embedded.x_val), keys(embedded.x_test)
    assert not (train & val) and not (train & test) and not (val & test)
    # The source file is sorted by label; a shuffled split is not.
    assert not np.all(np.diff(embedded.y_train) >= 0)


def test_embedded_split_depends_on_split_seed_only():
    a = load_splits(embedded_cfg())
    b = load_splits(embedded_cfg(split_seed=1))
    assert not np.array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(load_splits(embedded_cfg()).y_test, a.y_test)


def test_max_train_examples_keeps_classes_balanced():
    splits = load_splits(embedded_cfg(max_train_examples=305))
    counts = np.bincount(splits.y_train, minlength=10)
    assert counts.sum() == 305
    assert counts.max() - counts.min() <= 1
    assert splits.sizes()["test"] == 500  # only training is capped


def test_stratified_split_handles_unequal_classes():
    labels = np.repeat(np.arange(3), [100, 50, 10])
    val, train = stratified_split(labels, [16, 144], seed=0)
    assert len(set(val) & set(train)) == 0 and len(val) + len(train) == 160
    np.testing.assert_array_equal(np.bincount(labels[val]), [10, 5, 1])


def test_balanced_subset_without_limit_is_everything():
    assert len(balanced_subset(np.arange(10) % 3, None, 0)) == 10


def test_pipeline_scales_batches_and_reshuffles(embedded):
    ds = make_dataset(embedded.x_val, embedded.y_val.astype(np.int32), batch_size=64, shuffle=True, seed=3)
    first = [y.numpy() for _, y in ds]
    second = [y.numpy() for _, y in ds]
    x, _ = next(iter(ds))
    assert x.dtype.name == "float32" and 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    assert [len(b) for b in first] == [64] * 7 + [52]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # new order per epoch
    assert sorted(np.concatenate(first)) == sorted(np.concatenate(second))


# --- IDX -------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code=0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, n_train=60, n_test=20, gz=False):
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, size=(n, 28, 28))
        files[f"{prefix}-labels-idx1-ubyte"] = np.arange(n) % 10
    for name, array in files.items():
        blob = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (directory / name).write_bytes(blob)
    return files


def idx_cfg(directory, val_examples=10):
    return OmegaConf.create(dict(
        name="idx", _target_="keras_loss_recipes.data.idx.load_idx", dir=str(directory), num_classes=10, val_examples=val_examples,
        split_seed=0, max_train_examples=None,
        files=dict(train_images="train-images-idx3-ubyte", train_labels="train-labels-idx1-ubyte",
                   test_images="t10k-images-idx3-ubyte", test_labels="t10k-labels-idx1-ubyte"),
    ))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path, gz):
    files = write_idx_dir(tmp_path, gz=gz)
    splits = load_idx(idx_cfg(tmp_path), split_seed=0)
    assert splits.sizes() == {"train": 50, "val": 10, "test": 20}
    np.testing.assert_array_equal(splits.x_test[..., 0], files["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(np.bincount(splits.y_val), [1] * 10)


def test_parse_idx_reads_header_dimensions():
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    np.testing.assert_array_equal(parse_idx(idx_bytes(array), 3, "x"), array)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "bad magic number"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "data type float"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b[:3], "too short"),
    ],
)
def test_parse_idx_rejects_corrupt_files(mutate, message):
    blob = idx_bytes(np.zeros((2, 28, 28)))
    with pytest.raises(UserError, match=message):
        parse_idx(mutate(blob), 3, "file")


def test_parse_idx_rejects_labels_file_in_images_slot():
    with pytest.raises(UserError, match="1 dimensions in the header; expected 3"):
        parse_idx(idx_bytes(np.zeros(5)), 3, "file")


def test_idx_errors_for_missing_dir_files_shapes_and_labels(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_idx(idx_cfg(tmp_path / "nope"), 0)
    with pytest.raises(UserError, match="no file train-images-idx3-ubyte"):
        load_idx(idx_cfg(tmp_path), 0)
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 12)))
    with pytest.raises(UserError, match="labels range 12..12; expected 0..9"):
        load_idx(idx_cfg(tmp_path), 0)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(20) % 10))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((20, 32, 32))))
    with pytest.raises(UserError, match=r"test images are \(32, 32, 1\), training images \(28, 28, 1\)"):
        load_idx(idx_cfg(tmp_path), 0)


# --- small data sets: data.val_examples ------------------------------------


@pytest.fixture(scope="session")
def small_idx_dir(tmp_path_factory):
    """4,000 training and 500 test images in the gzip IDX format: fewer than MNIST's 5,000 validation images."""
    directory = tmp_path_factory.mktemp("idx_4000")
    write_idx_dir(directory, n_train=4000, n_test=500, gz=True)
    return directory


def test_a_small_idx_set_trains_on_the_shipped_default_and_says_what_it_took(compose, small_idx_dir, caplog):
    data = compose("data=idx", f"data.dir={small_idx_dir}").data
    with caplog.at_level(logging.INFO, logger="keras_loss_recipes.data.validation_split"):
        splits = load_splits(data)
    assert splits.sizes() == {"train": 3600, "val": 400, "test": 500}  # auto: 10%
    np.testing.assert_array_equal(np.bincount(splits.y_val), [40] * 10)
    assert "data.val_examples=auto: 400 of the 4000 training images" in caplog.text
    assert auto_val_examples(60_000) == 5000  # the full MNIST keeps its 5,000


def test_a_validation_size_the_set_cannot_hold_names_the_setting_and_a_size_that_works(small_idx_dir):
    with pytest.raises(UserError) as err:
        load_splits(idx_cfg(small_idx_dir, val_examples=5000))
    message = str(err.value)
    assert message.startswith("data.val_examples=5000: ") and "holds only 4000 training images" in message
    working = int(re.search(r"use e\.g\. data\.val_examples=(\d+)", message).group(1))
    assert load_splits(idx_cfg(small_idx_dir, val_examples=working)).sizes()["val"] == working


# --- TFDS ------------------------------------------------------------------


def tfds_cfg(tmp_path, **overrides):
    base = dict(name="mnist", _target_="keras_loss_recipes.data.tfds_source.load_tfds", tfds_name="mnist", data_dir=str(tmp_path / "tfds"),
                download="true", num_classes=10, label_offset=0, val_examples=20,
                split_seed=0, max_train_examples=None)
    return OmegaConf.create({**base, **overrides})


def test_tfds_source_through_mock_data(tmp_path):
    tfds = needs_module("tensorflow_datasets", "pip install -r requirements.txt")
    with tfds.testing.mock_data(num_examples=100):
        splits = load_splits(tfds_cfg(tmp_path, max_train_examples=50))
    assert splits.sizes() == {"train": 50, "val": 20, "test": 100}
    assert splits.x_train.shape[1:] == (28, 28, 1) and splits.x_train.dtype == np.uint8
    assert splits.y_train.min() >= 0 and splits.y_train.max() <= 9


def test_tfds_label_offset_for_emnist_letters(tmp_path, monkeypatch):
    # TFDS numbers EMNIST letters 1..26; label_offset=1 makes them 0..25.
    needs_module("tensorflow_datasets", "pip install -r requirements.txt")
    from keras_loss_recipes.data import tfds_source

    letters = np.arange(52) % 26 + 1
    monkeypatch.setattr(tfds_source, "split_to_numpy",
                        lambda builder, split: (np.zeros((52, 28, 28, 1), np.uint8), letters))
    monkeypatch.setattr(tfds_source, "ensure_prepared", lambda *args: None)
    cfg = tfds_cfg(tmp_path, name="emnist", tfds_name="emnist/letters", num_classes=26,
                   label_offset=1, val_examples=26)
    splits = load_splits(cfg)
    np.testing.assert_array_equal(np.sort(splits.y_test), np.sort(letters - 1))
    np.testing.assert_array_equal(np.bincount(splits.y_val), [1] * 26)
    cfg.label_offset = 0
    with pytest.raises(UserError, match="labels range 1..26; expected 0..25"):
        load_splits(cfg)


def test_tfds_missing_data_without_download_says_how_to_provide_it(tmp_path, caplog):
    needs_module("tensorflow_datasets", "pip install -r requirements.txt")
    with pytest.raises(UserError) as err, caplog.at_level("WARNING"):
        load_splits(tfds_cfg(tmp_path, download="false"))
    message = str(err.value)
    # One line that says what is missing, not first TFDS's warning about a folder that does not exist.
    assert not [r for r in caplog.records if "dataset_info.json" in r.getMessage()]
    assert "'mnist' is not in" in message and str(tmp_path / "tfds") in message
    assert "tfds build mnist" in message and "data=idx" in message


def test_tfds_offline_auto_download_fails_fast(tmp_path, monkeypatch):
    needs_module("tensorflow_datasets", "pip install -r requirements.txt")
    from keras_loss_recipes.data import tfds_source

    monkeypatch.setattr(tfds_source, "host_resolves", lambda host=None: False)
    with pytest.raises(UserError, match="cannot be downloaded .*unreachable"):
        load_splits(tfds_cfg(tmp_path, download="auto"))


# --- arrays of yours: the scale of float images, class names ---------------


def arrays_cfg(**overrides):
    return OmegaConf.create({"name": "npz", "_target_": "keras_loss_recipes.data.arrays.load_npz", "path": None,
                             "num_classes": None, "val_examples": "auto", "test_examples": "auto", "split_seed": 0,
                             "max_train_examples": None, **overrides})


def digits_like(count=60, classes=3, dtype=np.uint8, high=255):
    """Small images whose pixels reach `high`, labels 0..classes-1 in turn."""
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, size=(count, 6, 6)) * (high / 255)).astype(dtype)
    images[0, 0, 0] = high
    return images, np.arange(count) % classes


def from_arrays(**arrays):
    from keras_loss_recipes.data.arrays import splits_from_arrays

    return splits_from_arrays(arrays, arrays_cfg(), 0, "mine", num_classes=None)


def test_floats_in_0_1_are_taken_as_scaled_once_and_said_so(caplog):
    from keras_loss_recipes.data.pipeline import scale_images

    x, y = digits_like(dtype=np.float64, high=1.0)  # a max of exactly 1.0 is [0, 1] too
    with caplog.at_level(logging.INFO, logger="keras_loss_recipes.data.pixel_scale"):
        splits = from_arrays(x_train=x, y_train=y, x_test=x[:9], y_test=y[:9])
    said = [r.getMessage() for r in caplog.records if r.name.endswith("pixel_scale")]
    assert said == ["mine: x_train, x_test hold floats in [0, 1]: taken as already scaled (not divided by 255)"]
    np.testing.assert_array_equal(scale_images(splits.x_test)[..., 0], x[:9].astype(np.float32))
    batches = make_dataset(splits.x_test, splits.y_test, batch_size=9, shuffle=False, seed=0)
    first = next(iter(batches))[0].numpy()
    assert first.max() == 1.0
    np.testing.assert_array_equal(first[..., 0], x[:9].astype(np.float32))


def test_float_pixels_are_scaled_as_uint8_pixels_are():
    from keras_loss_recipes.data.pipeline import scale_images

    pixels, y = digits_like()
    as_uint8 = from_arrays(x_train=pixels, y_train=y)
    as_floats = from_arrays(x_train=pixels.astype(np.float64), y_train=y)
    assert as_uint8.x_train.dtype == np.uint8 and as_floats.x_train.dtype == np.float32
    for split in ("x_train", "x_val", "x_test"):
        ours, theirs = scale_images(getattr(as_floats, split)), scale_images(getattr(as_uint8, split))
        assert ours.max() <= 1.0
        np.testing.assert_array_equal(ours, theirs)  # to the bit


@pytest.mark.parametrize("value, message", [
    (np.nan, "mine: x_train[7] holds nan; images must be finite numbers: drop or repair the 1 image(s)"),
    (-0.5, "mine: x_train[7] holds -0.5; float images must lie in [0, 1] (already scaled) or [0, 255] (pixels)"),
    (300.0, "mine: x_train[7] holds 300; float images must lie in [0, 1]"),
])
def test_floats_no_image_holds_are_one_line_naming_the_array_and_value(value, message):
    x, y = digits_like(dtype=np.float32, high=1.0)
    x[7, 2, 3] = value
    with pytest.raises(UserError) as err:
        from_arrays(x_train=x, y_train=y)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_training_and_test_floats_on_two_scales_are_one_line():
    x, y = digits_like(dtype=np.float32, high=1.0)
    with pytest.raises(UserError, match=r"mine: x_train holds floats in \[0, 1\]; x_test holds floats in "
                                        r"\[0, 255\] \(max above 1\); give all images on one scale"):
        from_arrays(x_train=x, y_train=y, x_test=x[:9] * 255, y_test=y[:9])


def test_class_names_from_an_npz_and_from_a_callable(tmp_path, monkeypatch):
    x, y = digits_like()
    np.savez(tmp_path / "named.npz", x_train=x, y_train=y, class_names=np.array(["cat", "dog", "emu"]))
    splits = load_splits(arrays_cfg(path=str(tmp_path / "named.npz")))
    assert splits.class_names == ["cat", "dog", "emu"] and splits.classes() == "3 (cat, dog, emu)"
    module = tmp_path / "named_data.py"
    module.write_text("import numpy as np\n"
                      "def load():\n"
                      "    x = np.zeros((40, 5, 5), np.uint8)\n"
                      "    return {'x_train': x, 'y_train': np.arange(40) % 8, 'class_names': [str(i) for i in 'abcdefgh']}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from_code = load_splits(arrays_cfg(_target_="named_data.load"))
    assert from_code.classes() == "8 (a, b, c, ..., h)" and from_code.class_names == list("abcdefgh")


def test_unnamed_classes_are_shown_as_their_labels(embedded):
    assert embedded.class_names is None and embedded.classes() == "10 (0, 1, 2, ..., 9)"


@pytest.mark.parametrize("names, overrides, message", [
    (np.array(["cat", "dog"]), {}, "class_names holds 2 names for 3 classes (labels 0..2); give one name per class"),
    (np.array(["cat", "dog", "emu"]), {"num_classes": 4}, "class_names holds 3 names for 4 classes (data.num_classes=4)"),
    (np.array([["cat", "dog", "emu"]]), {}, "class_names has shape (1, 3); expected one name per class"),
    (np.array(["cat", "dog", "emu"], dtype=object), {}, "array class_names holds Python objects"),
])
def test_class_names_that_do_not_name_the_classes_are_one_line(tmp_path, names, overrides, message):
    x, y = digits_like()
    np.savez(tmp_path / "named.npz", x_train=x, y_train=y, class_names=names)
    with pytest.raises(UserError) as err:
        load_splits(arrays_cfg(path=str(tmp_path / "named.npz"), **overrides))
    assert str(err.value).startswith(f"data.path={tmp_path / 'named.npz'}: {message}"), str(err.value)


def test_the_validation_line_gives_the_sizes_the_split_made(caplog):
    # 1,797 images in classes of unequal size, as scikit-learn's digits: rounding each class's share on its
    # own took 160 for the 161 asked.
    sizes = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    labels = np.repeat(np.arange(10), sizes)
    with caplog.at_level(logging.INFO, logger="keras_loss_recipes.data.validation_split"):
        splits = from_arrays(x_train=np.zeros((len(labels), 4, 4), np.uint8), y_train=labels)
    assert splits.sizes() == {"train": 1457, "val": 161, "test": 179}
    assert [r.getMessage() for r in caplog.records if r.name.endswith("validation_split")] == [
        "data.test_examples=auto: 179 of the 1797 training images in mine (the test split): 10% (at most 5000), "
        "stratified by class; 1618 left",
        "data.val_examples=auto: 161 of the 1618 training images in mine: 10% (at most 5000), stratified by class; "
        "1457 left"]


def test_stratified_parts_have_exactly_the_sizes_asked():
    labels = np.repeat(np.arange(10), 500)
    val, rest = stratified_split(labels, [5, 4995], seed=0)  # every class's share is 0.5
    assert len(val) == 5 and len(set(val) | set(rest)) == 5000


def test_integer_images_outside_0_to_255_are_named_not_divided():
    from keras_loss_recipes.data.pixel_scale import on_split_scale

    images = np.zeros((3, 4, 4), np.int16)
    images[2, 1, 1] = -5
    with pytest.raises(UserError, match=r"^data.path=x.npz: x_test\[2\] holds -5; integer images must be pixels"):
        on_split_scale({"x_train": np.zeros((3, 4, 4), np.uint8), "x_test": images}, ("x_train", "x_test"), "data.path=x.npz")
    kept = {"x_train": np.full((3, 4, 4), 255, np.uint16)}
    assert on_split_scale(kept, ("x_train",), "w")["x_train"] is kept["x_train"]  # pixels as they are
