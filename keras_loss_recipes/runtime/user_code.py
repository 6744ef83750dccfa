"""Errors in the user's own code: one line at their file and line, then their own frames of the traceback.

The user's code: a module that `_target_` names, its builder, factory or data callable.

A frame is the user's when its file lies outside this package and outside the places Python installs
packages and its standard library: the user's `my_models.py`, wherever it is.

    >>> err = UserCodeError("my_models.py:3: SyntaxError: expected ':'", "")
    >>> str(err)
    "my_models.py:3: SyntaxError: expected ':'"
"""
from __future__ import annotations

import functools
import os
import site
import sysconfig
import traceback
from pathlib import Path

from keras_loss_recipes.runtime.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_FILES = (PACKAGE_DIR, PACKAGE_DIR.parent / "train.py", PACKAGE_DIR.parent / "hydra_plugins")


class UserCodeError(UserError):
    """An error raised in the user's code: its one line (`str()`) and the user's frames (`frames`)."""

    def __init__(self, line: str, frames: str):
        super().__init__(line)
        self.frames = frames


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[Path, ...]:
    """Where Python keeps its standard library and installed packages (a venv's and its base's)."""
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages())
    paths.add(site.getusersitepackages())
    return tuple(Path(p).resolve() for p in paths if p)


def is_users(filename: str) -> bool:
    """Whether a traceback's file is the user's own (not this project's, a package's or Python's)."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return not any(path == root or root in path.parents for root in (*PROJECT_FILES, *_library_dirs()))


def shown(filename: str) -> str:
    """A file as the user knows it: relative to the directory they run from, where it lies in it."""
    try:
        return os.path.relpath(filename) if Path(filename).resolve().is_relative_to(Path.cwd()) else filename
    except ValueError:
        return filename


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def raised_in_user_code(err: BaseException) -> UserCodeError | None:
    """`err` as an error of the user's code, where its traceback passes through the user's files; else None."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if is_users(f.filename)]
    if not frames:
        return None
    last = frames[-1]
    listing = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(err), err))
    if isinstance(err, SyntaxError) and err.filename:  # in a module the user's code imports: where its syntax fails
        return UserCodeError(f"{shown(err.filename)}:{err.lineno}: {type(err).__name__}: {err.msg}",
                             "Traceback (your code only):\n" + listing)
    line = f"{shown(last.filename)}:{last.lineno}: {type(err).__name__}: {_first_line(err)}"
    return UserCodeError(line, "Traceback (your code only):\n" + listing)


def import_failed(err: Exception, module_name: str, key: str) -> UserError | None:
    """The user's module `module_name` did not import: its syntax, a package it imports that is not installed,
    or an error its top level raised. None where the module itself was not found."""
    if isinstance(err, SyntaxError):
        where = f"{shown(err.filename)}:{err.lineno}" if err.filename else module_name
        frames = "".join(traceback.format_exception_only(type(err), err))
        return UserCodeError(f"{where}: {type(err).__name__}: {err.msg}", frames)
    if isinstance(err, ModuleNotFoundError) and err.name and not _is_part_of(err.name, module_name):
        users = [f for f in traceback.extract_tb(err.__traceback__) if is_users(f.filename)]
        where = f"{shown(users[-1].filename)}:{users[-1].lineno}" if users else f"{key} module {module_name!r}"
        return UserCodeError(f"{where}: imports {err.name}, which is not installed; install it (pip install "
                             f"{err.name.split('.')[0]}) in the environment that runs the recipes",
                             "Traceback (your code only):\n" + "".join(traceback.format_list(users)))
    if isinstance(err, ModuleNotFoundError):
        return None
    return raised_in_user_code(err)


def _is_part_of(missing: str, module_name: str) -> bool:
    """Whether the module not found is `module_name` itself or a package on its dotted path."""
    return module_name == missing or module_name.startswith(missing + ".")
