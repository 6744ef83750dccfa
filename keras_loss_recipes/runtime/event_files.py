"""TensorBoard event files written with the `tensorboard` package alone, on every backend.

Keras's `TensorBoard` callback and `tf.summary` need TensorFlow; the JAX and
PyTorch backends may run where it is not installed. Everything this project
writes itself goes through `EventWriter`, which builds the same summaries
(scalar, text, image and HParams plugin data, as `tf.summary` would) from
TensorBoard's own protobuf helpers, so the dashboards look the same whichever
backend wrote them.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import threading
import time
from pathlib import Path


class EventWriter:
    """One event file in `log_dir`, as `tf.summary.create_file_writer` would make."""

    def __init__(self, log_dir):
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._file = EventFile(Path(log_dir))
        self._flushed = time.monotonic()

    def _add(self, summary, step: int) -> None:
        from tensorboard.compat.proto import event_pb2

        self._file.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalar(self, tag: str, value: float, step: int, description: str | None = None) -> None:
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb

        self._add(scalar_pb(tag, float(value), description=description), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add(text_pb(tag, text), step)

    def png(self, tag: str, png: Path, step: int = 0) -> None:
        """A PNG file as an image summary (stored encoded, as tf.summary.image stores it)."""
        import numpy as np
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.image.metadata import create_summary_metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        data = Path(png).read_bytes()
        width, height = png_size(data)
        tensor = make_tensor_proto(np.array([str(width).encode(), str(height).encode(), data], dtype=object))
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, tensor=tensor,
                          metadata=create_summary_metadata(display_name=None, description=None))
        self._add(summary, step)

    def hparams(self, values: dict, trial_id: str) -> None:
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        self._add(hparams_pb(values, trial_id=trial_id), 0)

    def hparams_config(self, hparams: list, metrics: list, differs: frozenset = frozenset()) -> None:
        """The experiment: its hparams and metrics, in order.

        `differs` names the hparams marked as differing across sessions: the HParams
        dashboard lists those first and shows the first five columns by default.
        `summary_v2.HParam` cannot say so, hence the edit of the proto it builds.
        """
        from tensorboard.plugins.hparams import plugin_data_pb2
        from tensorboard.plugins.hparams.summary_v2 import hparams_config_pb

        summary = hparams_config_pb(hparams=hparams, metrics=metrics)
        value = summary.value[0]
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        for info in data.experiment.hparam_infos:
            info.differs = info.name in differs
        value.metadata.plugin_data.content = data.SerializeToString()
        self._add(summary, 0)

    def custom_scalars(self, layout) -> None:
        """A custom-scalars layout (a `layout_pb2.Layout`), as `summary.pb` writes it without TensorFlow."""
        import numpy as np
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.custom_scalar import metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        summary = summary_pb2.Summary()
        summary.value.add(tag=metadata.CONFIG_SUMMARY_TAG, metadata=metadata.create_summary_metadata(),
                          tensor=make_tensor_proto(np.array(layout.SerializeToString(), dtype=object)))
        self._add(summary, 0)

    def restart_at(self, step: int) -> None:
        """Mark a restart at `step`: TensorBoard then drops the events of this directory at `step` and
        after that it read before (its "orphaned data" purge), so a resumed run's re-trained epochs
        are not shown twice."""
        from tensorboard.compat.proto import event_pb2

        self._file.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.monotonic()

    def flush_every(self, seconds: float) -> None:
        """Flush if the last flush is `seconds` old: a run of short epochs writes its events in batches
        (`close` flushes what is left)."""
        if time.monotonic() - self._flushed >= seconds:
            self.flush()

    def close(self) -> None:
        self._file.close()


_file_numbers = itertools.count()  # this process's event files, told apart when made in the same second


class EventFile:
    """An event file as TensorBoard's `EventFileWriter` makes it: its name, its first event (the file
    version), its records (`RecordWriter`'s framing and checksums), written with plain file I/O. That writer
    opens its file through `tf.io.gfile`, which imports TensorFlow where it is installed: seconds of CPU for a
    process that trains on JAX or PyTorch, or only writes a sweep's report."""

    def __init__(self, log_dir: Path):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        name = "events.out.tfevents.%010d.%s.%s.%s" % (time.time(), socket.gethostname(), os.getpid(),
                                                       next(_file_numbers))
        self._records = RecordWriter(open(log_dir / name, "wb"))
        self._lock = threading.Lock()  # callbacks and the process's other threads may write at once
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2",
                                       source_metadata=event_pb2.SourceMetadata(writer=__name__)))
        self.flush()

    def add_event(self, event) -> None:
        with self._lock:
            self._records.write(event.SerializeToString())

    def flush(self) -> None:
        with self._lock:
            self._records.flush()

    def close(self) -> None:
        with self._lock:
            if not self._records.closed:
                self._records.close()


@contextlib.contextmanager
def summary_writer(log_dir):
    """An `EventWriter` for `log_dir`, closed (flushed) at the end of the block."""
    writer = EventWriter(log_dir)
    try:
        yield writer
    finally:
        writer.close()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])
