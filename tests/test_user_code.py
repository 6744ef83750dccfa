"""Errors in the user's own code point at the user's file and line, with only the user's frames."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.targets import resolve_target
from keras_loss_recipes.runtime.user_code import UserCodeError, is_users, raised_in_user_code
from tests.conftest import ROOT, TINY, project_env

BAD_SYNTAX = "import keras\n\n\ndef build(inputs, num_classes)\n    return inputs\n"
MISSING_DEPENDENCY = "import os\nimport not_installed_pkg\n\n\ndef build(inputs, num_classes):\n    return inputs\n"
RAISING = '''
def _lookup(table):
    return table["missing"]


def load():
    return _lookup({})
'''


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A directory of the user's, on the path, with modules of theirs that fail in three ways."""
    for name, text in {"bad_syntax": BAD_SYNTAX, "imp_models": MISSING_DEPENDENCY, "raising": RAISING}.items():
        (tmp_path / f"{name}.py").write_text(text)
        sys.modules.pop(name, None)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_only_the_users_files_count_as_theirs(home):
    import keras

    import keras_loss_recipes.training.models as models

    assert is_users(str(home / "raising.py"))
    assert not is_users(keras.__file__) and not is_users(json.__file__) and not is_users(models.__file__)
    assert not is_users(str(ROOT / "train.py")) and not is_users("<frozen importlib._bootstrap>")


def test_a_syntax_error_names_the_file_and_line(home):
    with pytest.raises(UserCodeError) as err:
        resolve_target("bad_syntax.build", "model._target_")
    assert str(err.value) == "bad_syntax.py:4: SyntaxError: expected ':'"
    assert "def build(inputs, num_classes)" in err.value.frames


def test_a_missing_dependency_is_told_apart_from_a_missing_module(home):
    with pytest.raises(UserCodeError) as err:
        resolve_target("imp_models.build", "model._target_")
    assert str(err.value).startswith("imp_models.py:2: imports not_installed_pkg, which is not installed")
    with pytest.raises(UserError, match="module 'no_such_module' not found") as missing:
        resolve_target("no_such_module.build", "model._target_")
    assert not isinstance(missing.value, UserCodeError)


def test_an_error_raised_in_the_users_callable_shows_their_frames_only(home):
    load = resolve_target("raising.load", "data._target_")
    try:
        load()
    except KeyError as raised:
        err = raised_in_user_code(raised)
    assert str(err) == "raising.py:3: KeyError: 'missing'"
    assert err.frames.count("raising.py") == 2 and "keras_loss_recipes" not in err.frames
    try:
        json.loads("{")
    except ValueError as raised:  # its frames less this test's own: the standard library's only
        assert raised_in_user_code(raised.with_traceback(raised.__traceback__.tb_next)) is None


@pytest.mark.slow(seconds=45)
def test_the_command_says_one_line_exits_2_and_records_the_failure(home):
    def train_py(*overrides):
        return subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY, *overrides], cwd=home,
                              env=project_env(), capture_output=True, text=True, timeout=300)

    syntax = train_py("model._target_=bad_syntax.build", f"hydra.run.dir={home / 'syntax'}")
    assert syntax.returncode == 2, syntax.stderr[-2000:]
    assert "error: bad_syntax.py:4: SyntaxError: expected ':'" in syntax.stderr.splitlines()
    assert "Error executing job" not in syntax.stderr and "keras_loss_recipes" not in syntax.stderr
    assert json.loads((home / "syntax" / "metrics.json").read_text())["status"] == "failed"
    data = train_py("data._target_=raising.load", f"hydra.run.dir={home / 'data'}")
    assert data.returncode == 2, data.stderr[-2000:]
    assert "error: raising.py:3: KeyError: 'missing'" in data.stderr.splitlines()
    assert "Traceback (your code only):" in data.stderr and "keras_loss_recipes" not in data.stderr
    recorded = json.loads((home / "data" / "metrics.json").read_text())
    assert (recorded["status"], recorded["error"]) == ("failed", "raising.py:3: KeyError: 'missing'")
