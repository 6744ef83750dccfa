"""Drop a built-in model config's options when `model._target_` points elsewhere: they belong to its target.

`python train.py model._target_=my_models.build` composes the default model group (cnn) and swaps its
target, so without this `dropout: 0.5` of configs/model/cnn.yaml would reach `my_models.build`, be
recorded as its option and listed in a sweep's report. Here the options of the chosen group file are
dropped when the config's target is no longer that file's; an option the command line sets stays.

    >>> foreign_options({"_target_": "my.build", "name": "my.build", "dropout": 0.5, "hidden": 3},
    ...                 {"_target_": "pkg.cnn", "name": "cnn", "dropout": 0.5}, overridden={"hidden"})
    ['dropout']
"""
from __future__ import annotations

from pathlib import Path

from keras_loss_recipes.training.models import NOT_OPTIONS


def foreign_options(model_cfg, group_file, overridden) -> list[str]:
    """The keys of `model_cfg` (typed: its `_target_` is there) that came from the group file `group_file`
    (the YAML as written: a file of yours may name no `_target_`), made for another target."""
    if group_file is None or group_file.get("_target_") == model_cfg["_target_"]:
        return []
    return [key for key in group_file if key not in NOT_OPTIONS and key in model_cfg and key not in overridden]


def _group_file(choice: str, config_sources) -> Path | None:
    """configs/model/<choice>.yaml in the first of Hydra's file search paths that has it."""
    for source in config_sources:
        if source.get("schema") == "file" and source.get("path"):
            path = Path(source["path"], "model", f"{choice}.yaml")
            if path.is_file():
                return path
    return None


def drop_foreign_options(cfg, hydra_cfg):
    """`cfg` (typed) without the options of the chosen model group that another target replaced; `hydra_cfg`
    is Hydra's own node (HydraConfig.get(), or a composed config's `hydra`)."""
    from omegaconf import OmegaConf

    choice = hydra_cfg.runtime.choices.get("model")
    path = _group_file(choice, hydra_cfg.runtime.config_sources) if choice else None
    group_file = OmegaConf.load(path) if path is not None else None
    overridden = {key.lstrip("+~").split("=", 1)[0].removeprefix("model.") for key in hydra_cfg.overrides.task}
    for key in foreign_options(cfg.model, group_file, overridden):
        del cfg.model[key]  # the model node is open (schema.OPEN_GROUPS): a key of no schema goes
    return cfg
