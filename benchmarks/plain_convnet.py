"""The keras.io "Simple MNIST convnet", as a user writes it: the plain-Keras side.

    python benchmarks/plain_convnet.py --epochs 3 [--precision mixed_bfloat16] [--pipeline tfdata]

Run as a script it is the whole-process baseline: import Keras, load the same
embedded MNIST split the framework trains on by default, fit, evaluate on the
test split, exit. The benchmark also calls `fit_plain` in-process.

    pipeline=numpy    the example itself: numpy arrays, one-hot labels, categorical_crossentropy
    pipeline=tfdata   the same model fed the framework's own input pipeline (keras_loss_recipes.data.pipeline:
                      tf.data, shuffled per epoch, prefetched) with integer labels and
                      sparse_categorical_crossentropy, to tell the pipeline's share from the framework's

Under a mixed policy the softmax is a float32 layer of its own, as the Keras
mixed-precision guide writes it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_STARTED = time.time()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PIPELINES = ("numpy", "tfdata")
BATCH = 128


def build_convnet(precision: str = "float32"):
    """The keras.io example's model as the doctor's example saves it (its layers: keras_loss_recipes.training.models.
    convnet_layers, the one definition of them), built under `precision`; under a mixed policy its head
    becomes a linear Dense and a float32 softmax."""
    import keras
    from keras import layers

    from keras_loss_recipes.recipes.doctor.examples import NUM_CLASSES, convnet

    keras.mixed_precision.set_global_policy(precision)
    model = convnet()
    if precision == "float32":
        return model
    return keras.Sequential([model.inputs[0], *model.layers[:-1], layers.Dense(NUM_CLASSES),
                             layers.Activation("softmax", dtype="float32")])


def fit_plain(splits, epochs: int, precision: str = "float32", pipeline: str = "numpy", batch: int = BATCH):
    """Fit the plain convnet on `splits`, validating on its validation split; returns the model and the
    throughput timer (the framework's own, so both sides are timed alike)."""
    import keras

    from keras_loss_recipes.data.pipeline import make_dataset, scale_images
    from keras_loss_recipes.training.callbacks import TrainThroughput

    keras.utils.clear_session()  # each fit starts from a clean slate, as the framework's does
    model = build_convnet(precision)
    timer = TrainThroughput(len(splits.y_train))
    if pipeline == "numpy":
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        x, x_val = scale_images(splits.x_train), scale_images(splits.x_val)
        y, y_val = keras.utils.to_categorical(splits.y_train, 10), keras.utils.to_categorical(splits.y_val, 10)
        model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
                  callbacks=[timer])
    else:
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        train = make_dataset(splits.x_train, splits.y_train, batch, shuffle=True, seed=0)
        val = make_dataset(splits.x_val, splits.y_val, batch, shuffle=False, seed=0)
        # shuffle=False: the dataset reshuffles itself every epoch, as in the framework.
        model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    keras.mixed_precision.set_global_policy("float32")
    return model, timer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--pipeline", choices=PIPELINES, default="numpy")
    args = parser.parse_args(argv)

    from keras_loss_recipes.data.embedded import load_embedded

    splits = load_embedded(val_examples=500, test_examples=500, split_seed=0)
    model, _ = fit_plain(splits, args.epochs, args.precision, args.pipeline)
    from keras_loss_recipes.data.pipeline import scale_images

    model.predict(scale_images(splits.x_test), batch_size=256, verbose=0)
    print(f"done in {time.time() - _STARTED:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
