"""Files written whole or not at all: under a temporary name beside the file, then renamed onto it.

A kill or a full disk during the write leaves the earlier file as it was (a
rename within a directory is atomic); the error names the file (`errors.writing`).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from keras_loss_recipes.runtime.errors import writing


def partial_path(path) -> Path:
    """Where `path` is written before it is renamed onto it (hidden, same suffix: Keras wants `.keras`)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def is_partial(path) -> bool:
    """A write that a kill or a full disk cut short left this: not part of any run's record."""
    name = Path(path).name
    return name.startswith(".") and ".partial" in name


@contextlib.contextmanager
def replacing(path):
    """Yields the temporary path to write instead of `path` (`partial_path`); it replaces `path` when the block
    ends without an error."""
    path, partial = Path(path), partial_path(path)
    with writing(path):
        yield partial
    os.replace(partial, path)


def write_text(path, text: str) -> None:
    """`text` into `path`, as given (no newline translation: csv rows end in \\r\\n)."""
    with replacing(path) as partial, partial.open("w", newline="") as handle:
        handle.write(text)
