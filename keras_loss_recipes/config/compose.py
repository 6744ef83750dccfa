"""The config `python train.py <overrides>` would run, composed in this process.

For whoever runs recipes without the command line: the findings, the benchmark, the tests.
"""
from __future__ import annotations

import site
import sys
from pathlib import Path

# configs/ at the top of a clone; pip installs a copy under the environment's prefix (pyproject.toml).
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
INSTALLED_CONFIGS = ("share", "keras-loss-recipes", "configs")


def config_dir() -> Path:
    """The configs the recipes compose: the clone's this code runs from, else the installed copy."""
    if (REPO_CONFIGS / "train.yaml").is_file():
        return REPO_CONFIGS
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix, *INSTALLED_CONFIGS)
        if (installed / "train.yaml").is_file():
            return installed
    raise RuntimeError(f"no configs/ beside the code ({REPO_CONFIGS}) nor installed under {sys.prefix}: "
                       "reinstall with pip install .")


def compose_train(overrides) -> object:
    """configs/train.yaml with `overrides` (a list of `key=value` strings), as Hydra composes it, typed
    (`schema.typed`) as train.py types it for each job."""
    from hydra import compose, initialize_config_dir

    from omegaconf import open_dict

    from keras_loss_recipes.config import resolvers
    from keras_loss_recipes.config.model_options import drop_foreign_options
    from keras_loss_recipes.config.schema import typed

    resolvers.register()  # the resolvers configs/ uses
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    return drop_foreign_options(typed(cfg), hydra_cfg)
