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

NOT_OPTIONS = ("_target_", "name")  # keys of a model config that are not passed to its callable


def foreign_options(model_cfg, group_cfg, overridden) -> list[str]:
    """The keys of `model_cfg` that came from the group file `group_cfg`, made for another target."""
    if group_cfg is None or group_cfg.get("_target_") == model_cfg.get("_target_"):
        return []
    return [key for key in group_cfg if key not in NOT_OPTIONS and key in model_cfg and key not in overridden]


def _group_file(choice: str, config_sources) -> Path | None:
    """configs/model/<choice>.yaml in the first of Hydra's file search paths that has it."""
    for source in config_sources:
        if source.get("schema") == "file" and source.get("path"):
            path = Path(source["path"], "model", f"{choice}.yaml")
            if path.is_file():
                return path
    return None


def drop_foreign_options(cfg, hydra_cfg) -> list[str]:
    """Remove from `cfg.model` the options of the chosen model group that another target replaced; `hydra_cfg`
    is Hydra's own node (HydraConfig.get(), or a composed config's `hydra`). Returns the keys removed."""
    from omegaconf import OmegaConf, open_dict

    choice = hydra_cfg.runtime.choices.get("model")
    if "model" not in cfg or not choice:
        return []
    path = _group_file(choice, hydra_cfg.runtime.config_sources)
    group_cfg = OmegaConf.load(path) if path is not None else None
    overridden = {key.lstrip("+~").split("=", 1)[0].removeprefix("model.") for key in hydra_cfg.overrides.task}
    dropped = foreign_options(cfg.model, group_cfg, overridden)
    with open_dict(cfg):
        for key in dropped:
            del cfg.model[key]
    return dropped
