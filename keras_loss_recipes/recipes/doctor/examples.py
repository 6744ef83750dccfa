"""Models this project did not design, saved as .keras files for the loss doctor's tests and docs page.

    python -m keras_loss_recipes.recipes.doctor.examples OUT_DIR [NAME ...]     # saves OUT_DIR/<name>.keras (default: all)

    convnet       the keras.io "Simple MNIST convnet" as that example writes it (its layers:
                  keras_loss_recipes.training.models.convnet_layers): softmax Dense head, compiled with
                  loss="categorical_crossentropy"
    mobilenet     keras.applications.MobileNetV3Small(weights=None) with its default softmax head
                  (classifier_activation="softmax"), small input; saved uncompiled, as a fine-tuning
                  script gets it, so the loss comes from the command line
    sigmoid       a binary classifier: Dense(1, activation="sigmoid"), BinaryCrossentropy()
    logits        the right way: a Dense without activation, SparseCategoricalCrossentropy(from_logits=True)
    lambda        a softmax hidden in a Lambda layer: the doctor cannot see it and must say so
"""
from __future__ import annotations

import sys
from pathlib import Path

NUM_CLASSES = 10
MNIST_SHAPE = (28, 28, 1)


def convnet():
    import keras

    from keras_loss_recipes.training.models import convnet_layers

    model = keras.Sequential([keras.Input(shape=MNIST_SHAPE), *convnet_layers(NUM_CLASSES, head="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def mobilenet():
    import keras

    # 32x32 is the smallest input it takes; weights=None builds it offline in about a second.
    return keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=NUM_CLASSES)


def sigmoid():
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input(shape=(20,)), layers.Dense(16, activation="relu"),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(loss=keras.losses.BinaryCrossentropy(), optimizer="adam")
    return model


def logits():
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input(shape=MNIST_SHAPE), layers.Flatten(), layers.Dense(NUM_CLASSES)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    return model


def lambda_softmax():
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input(shape=MNIST_SHAPE), layers.Flatten(), layers.Dense(NUM_CLASSES),
                              layers.Lambda(lambda z: keras.ops.softmax(z))])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    return model


def reshaped_softmax():
    """A softmax with a Reshape after it: the doctor sees through the Reshape to the softmax, and on
    TensorFlow the op after it keeps Keras from rescuing it."""
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input(shape=MNIST_SHAPE), layers.Flatten(),
                              layers.Dense(NUM_CLASSES, activation="softmax", name="probs"),
                              layers.Reshape((NUM_CLASSES,))])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    return model


BUILDERS = {"convnet": convnet, "mobilenet": mobilenet, "sigmoid": sigmoid, "logits": logits,
            "lambda": lambda_softmax, "reshaped": reshaped_softmax}


def save(out_dir, names=None) -> dict[str, Path]:
    """Build and save the named example models (default: all) as OUT_DIR/<name>.keras."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or BUILDERS:
        paths[name] = out_dir / f"{name}.keras"
        BUILDERS[name]().save(paths[name])
    return paths


if __name__ == "__main__":
    for name, path in save(sys.argv[1], sys.argv[2:]).items():
        print(f"{name}: {path}")
