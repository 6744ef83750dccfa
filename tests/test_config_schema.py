"""The typed config: no inline defaults over it in the package, bad types as one line, one value source per key."""
from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing

import pytest
import yaml

from keras_loss_recipes.config import schema
from keras_loss_recipes.runtime.errors import UserError
from tests.conftest import ROOT, project_env

CONFIGS = ROOT / "configs"
# Names a config (or one of its groups) goes by in the package; a `.get("key")` on one of them, or on an
# attribute chain through `cfg` or a group, is a default written beside the YAML's.
CONFIG_NAMES = {"cfg", "model_cfg", "data_cfg", "options", "opt", *schema.GROUPS}


def _chain(node) -> list[str]:
    """`job.cfg.trainer` -> ["job", "cfg", "trainer"]; [] for anything but names and attributes."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else []


def config_gets(path) -> list[int]:
    """The lines of `path` that call `.get("key", ...)` on a config."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue
        chain = _chain(node.func.value)
        if chain and (chain[-1] in CONFIG_NAMES or "cfg" in chain or set(chain[1:]) & set(schema.GROUPS)):
            lines.append(node.lineno)
    return lines


def test_the_package_reads_the_config_as_typed_attributes():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / "keras_loss_recipes").rglob("*.py"))
             for line in config_gets(path)]
    print("\n".join(found))
    assert found == []


def test_the_check_sees_a_default_over_the_config(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f(cfg, metrics):\n    a = cfg.trainer.get('threads')\n    b = job.cfg.get('backend', 'x')\n"
                      "    c = trainer.get('epochs', 1)\n    return metrics.get('status'), a, b, c\n")
    assert config_gets(source) == [2, 3, 4]


# --- bad types: one line naming the key, the value and what it must be -------------------------------

@pytest.mark.parametrize("override, message", [
    ("trainer.epochs=abc", "trainer.epochs='abc': must be an integer"),
    ("seed=1.5", "seed=1.5: must be an integer"),
    ("telemetry.enabled=maybe", "telemetry.enabled='maybe': must be true or false"),
    ("trainer.threads=two", "trainer.threads='two': must be an integer or null"),
    ("trainer.batch_size=abc", "trainer.batch_size='abc': must be an integer"),
    ("trainer.preemption_grace_s=soon", "trainer.preemption_grace_s='soon': must be a number or null"),
    ("optimizer.learning_rate=fast", "optimizer.learning_rate='fast': must be a number"),
    ("data=folder data.image_size=[64,x]", "data.image_size[1]='x': must be a list of integers or null"),
    ("+trainer.epoch=3", "trainer.epoch: no such key (the keys here: epochs, batch_size"),
])
def test_a_bad_type_is_one_line(compose, override, message):
    with pytest.raises(UserError) as err:
        compose(*override.split())
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_every_schema_key_is_there_with_its_type(compose):
    cfg = compose("optimizer.learning_rate=1", "data._target_=my_data.load", "+data.rows=3")
    assert cfg.optimizer.learning_rate == 1.0 and isinstance(cfg.optimizer.learning_rate, float)
    # A callable of yours: the keys the arrays' split reads are there; its own keys pass untyped.
    assert (cfg.data.test_examples, cfg.data.num_classes, cfg.data.rows) == (500, None, 3)
    assert "${" not in str(cfg.backend) and cfg.recipe.run_name == "cnn_sparse_from_logits"  # resolved once


@pytest.mark.slow(seconds=10)
def test_train_py_says_a_bad_type_in_one_line_before_keras(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "train.py"), "trainer.epochs=abc"],
                            cwd=tmp_path, env=project_env(), capture_output=True, text=True, timeout=120)
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2
    assert said == ["error: trainer.epochs='abc': must be an integer"]
    assert not {"keras", "tensorflow", "jax", "torch"} & set(imported)
    assert not list(tmp_path.glob("runs/*/*"))  # no run directory left behind


# --- one value source per key: the YAML files, or (only where no file can) the schema ------------------

def _required(kind) -> dict:
    """A dataclass's fields without a value of their own: {name: the nested dataclass, or None}."""
    hints = typing.get_type_hints(kind)
    return {f.name: (hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None)
            for f in dataclasses.fields(kind) if f.default == schema.MISSING or dataclasses.is_dataclass(hints[f.name])}


def _with_defaults(kind) -> set[str]:
    return {f.name for f in dataclasses.fields(kind) if f.default not in (schema.MISSING, dataclasses.MISSING)}


def _file_values(path) -> dict:
    """A group file's keys and values, those of the files its defaults list names in its own group first."""
    raw = yaml.safe_load(path.read_text()) or {}
    values = {}
    for parent in raw.pop("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            values.update(_file_values(path.parent / f"{parent}.yaml"))
    return {**values, **raw}


def _mismatch(kind, values, where: str) -> list[str]:
    wrong = []
    required = _required(kind)
    for key in sorted(set(required) - set(values)):
        wrong.append(f"{where}.{key}: in {kind.__name__}, not in the file")
    for key in sorted(set(values) - set(required)):
        source = "a default in the schema too" if key in _with_defaults(kind) else f"no key of {kind.__name__}"
        wrong.append(f"{where}.{key}: {source}")
    for key, nested in required.items():
        if nested is not None and isinstance(values.get(key), dict):
            wrong += _mismatch(nested, values[key], f"{where}.{key}")
    return wrong


def test_every_configs_key_is_in_the_schema_once():
    wrong, used = [], set()
    for group in schema.GROUPS:
        for path in sorted((CONFIGS / group).glob("*.yaml")):
            values = _file_values(path)
            kind = schema.schema_of(group, values)
            used.add(kind)
            wrong += _mismatch(kind, values, f"configs/{group}/{path.stem}: {group}")
    top = {k: v for k, v in yaml.safe_load((CONFIGS / "train.yaml").read_text()).items() if k not in ("defaults", "hydra")}
    wrong += _mismatch(schema.Config, {**top, **dict.fromkeys(schema.GROUPS, None)}, "configs/train.yaml: ")
    assert wrong == []
    # Defaults in the schema only where no file gives the values: a data callable of yours.
    assert [k.__name__ for k in used if _with_defaults(k)] == []
    assert _with_defaults(schema.UserData) and schema.UserData not in used


def test_the_presets_set_keys_of_the_schema():
    unknown = []
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")) + sorted((CONFIGS / "hparams_search").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for group, values in raw.items():
            if group in schema.GROUPS:
                fields = {f.name for f in dataclasses.fields(schema.schema_of(group, {}))}
                unknown += [f"{path.name}: {group}.{key}" for key in values if key not in fields]
    assert unknown == []
