"""Writing TensorBoard summaries outside Keras's own callback: one place for the writer plumbing."""
from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def summary_writer(log_dir):
    """A TensorBoard event writer for `log_dir`, active as the default inside the block."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            yield writer
    finally:
        writer.close()


def png_image(tag: str, png: Path, step: int = 0) -> None:
    """A PNG file as a TensorBoard image (inside `summary_writer`)."""
    import tensorflow as tf

    tf.summary.image(tag, tf.io.decode_png(Path(png).read_bytes(), channels=4)[None], step=step)
