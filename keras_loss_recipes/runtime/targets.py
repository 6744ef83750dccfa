"""Find the callables a config names with `_target_` (`model._target_`, `data._target_`), or fail clearly.

The error is one line that names the module or the attribute.

    >>> resolve_target("math.sqrt", "model._target_")(4.0)
    2.0
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.user_code import import_failed


def _from_where_you_run() -> None:
    """Modules in the directory the command runs from are found, as `python -m` finds them (after every
    other place, so a file there cannot shadow an installed package)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def target_path(target, key: str) -> str:
    if not isinstance(target, str) or "." not in target:
        raise UserError(f"{key}={target!r}: name a callable as module.attribute, e.g. {key}=my_models.build "
                        "(see docs/your_model.md)")
    return target


def check_module_exists(target, key: str) -> None:
    """The target's top-level module can be found, without importing anything (importing a user's module
    would import Keras before its backend is chosen; `resolve_target` checks the rest later)."""
    top = target_path(target, key).split(".", 1)[0]
    _from_where_you_run()
    if importlib.util.find_spec(top) is None:
        raise UserError(f"{key}={target}: module {top!r} not found; put it on PYTHONPATH or in the directory "
                        "you run from")


def parameters(fn) -> dict:
    """The parameters of a callable by name ({} where Python cannot tell), for calling it with what it names."""
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def resolve_target(target, key: str):
    """The callable `module.attribute` that `target` names."""
    module_name, _, attribute = target_path(target, key).rpartition(".")
    _from_where_you_run()
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the module itself missing, or the user's code failing as it imports
        in_users_code = import_failed(err, module_name, key)
        if in_users_code is not None:
            raise in_users_code from None
        if not isinstance(err, ModuleNotFoundError):
            raise
        raise UserError(f"{key}={target}: module {module_name!r} not found ({err}); put it on PYTHONPATH or in "
                        "the directory you run from") from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise UserError(f"{key}={target}: module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(found):
        raise UserError(f"{key}={target}: {attribute!r} is not callable")
    return found
