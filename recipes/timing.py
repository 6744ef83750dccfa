"""Training throughput measured from inside `fit`, excluding validation time."""
from __future__ import annotations

import statistics
import time


def seconds_since_process_start() -> float | None:
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or no process table: not worth failing a run
        return None


def make_throughput_callback():
    import keras

    class TrainThroughput(keras.callbacks.Callback):
        """Samples/s of the training part of each epoch (validation excluded).

        The first epoch includes tracing and warm-up, so the summary is the
        median of the later epochs when there are any.
        """

        def __init__(self, train_examples: int):
            super().__init__()
            self.train_examples = train_examples
            self.epoch_seconds: list[float] = []
            self._start = None
            self.startup_s = None  # process start to the first training step (imports, data, build)

        def on_train_batch_begin(self, batch, logs=None):
            if self.startup_s is None:
                self.startup_s = seconds_since_process_start()

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._train_done = None

        def on_test_begin(self, logs=None):
            # Called when fit starts validating: the training part is over.
            if self._start is not None and self._train_done is None:
                self._train_done = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = self._train_done or time.perf_counter()
            self.epoch_seconds.append(end - self._start)

        def samples_per_s(self) -> float | None:
            steady = self.epoch_seconds[1:] or self.epoch_seconds
            if not steady:
                return None
            return self.train_examples / statistics.median(steady)

    return TrainThroughput
