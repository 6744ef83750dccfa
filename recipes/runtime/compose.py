"""The config `python train.py <overrides>` would run, composed in this process.

For whoever runs recipes without the command line: the findings, the benchmark, the tests.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_train(overrides) -> object:
    """configs/train.yaml with `overrides` (a list of `key=value` strings), as Hydra composes it."""
    from hydra import compose, initialize_config_dir

    from recipes.runtime import run_names

    run_names.register()  # the resolvers configs/ uses
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
