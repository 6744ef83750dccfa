"""Short, shell-safe names for the job directories of a sweep.

Hydra names a job by its overrides (`loss=softmax_ce,seed=0,model=mlp,...`),
which grows long and holds characters a shell may want quoted. A job here is
`<number>_<key>-<value>_...`: the job number first (unique, sorted like the
sweep), then the values of the keys the sweep varies, keys shortened to their
last part and floats to three significant digits, cut at `MAX_LENGTH`:

    >>> job_dir_name(3, ["model=mlp", "loss=softmax_ce", "seed=0"], swept=["loss", "seed"])
    '03_loss-softmax_ce_seed-0'
    >>> job_dir_name(12, ["optimizer.learning_rate=0.0013680095", "trainer.batch_size=64"],
    ...              swept=["optimizer.learning_rate", "trainer.batch_size"])
    '12_learning_rate-0.00137_batch_size-64'

The keys a sweep varies are written to its `sweep.json` when it starts (by the
sweep callback, before any job); without that file every override counts. The
full overrides stay in the job's `.hydra/overrides.yaml` and its HParams.

configs/train.yaml names sweep jobs with `${job_dir:...}`; `register()` makes
that resolver known wherever Hydra resolves it (the sweep callback's module
calls it on import, so launchers that run jobs in other processes know it too;
the config's other resolvers: keras_loss_recipes/config/resolvers.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

MAX_LENGTH = 60
RESOLVER = "job_dir"
SWEEP_FILE = "sweep.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def swept_keys(task_overrides: list[str], search_space: dict | None = None) -> list[str]:
    """The keys a sweep varies: its sweep overrides (`loss=a,b`, `seed=range(3)`) and the
    sweeper's search space (Optuna's `hydra.sweeper.params`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    return keys + [k for k in (search_space or {}) if k not in keys]


def _value(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    return text if number.is_integer() and "." not in text else f"{number:.3g}"


def job_dir_name(num, overrides, swept=None, exclude_keys=()) -> str:
    """`<num>_<key>-<value>_...` for the job's overrides of the `swept` keys (all, if None)."""
    parts = []
    for override in overrides:
        key, sep, value = str(override).partition("=")
        key = key.lstrip("+~")
        if not sep or key in set(exclude_keys) or key.startswith("hydra.") or (swept is not None and key not in swept):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}-{_value(value)}")
    name = _UNSAFE.sub("-", "_".join([f"{int(num):02d}", *parts]))
    return name[:MAX_LENGTH].rstrip("-_.")


def sweep_job_dir(num, overrides, sweep_dir, exclude_keys) -> str:
    """The resolver: `job_dir_name` with the swept keys that `sweep_dir`'s sweep.json records."""
    marker = Path(str(sweep_dir)) / SWEEP_FILE
    swept = json.loads(marker.read_text()).get("swept") if marker.is_file() else None
    return job_dir_name(num, overrides, swept, exclude_keys)


def register() -> None:
    """Make `${job_dir:...}` known to OmegaConf (once per process)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, sweep_job_dir)
