"""Whether the configured model takes what the data holds (`data.inputs`), and the token vocabulary it needs.

The project's own models say what they take (`TAKES`); a builder of yours is not checked here: Keras
says so when it is built. A model config with `vocabulary_size: null` gets the data's (its largest token
id + 1), filled in before the model is built, so the run's recorded config names it.
"""
from __future__ import annotations

import logging

from omegaconf import open_dict

from keras_loss_recipes.data import inputs
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.training import models, zoo

log = logging.getLogger(__name__)


def _target(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


TAKES = {_target(models.cnn): (inputs.IMAGES,), _target(zoo.keras_application): (inputs.IMAGES,),
         _target(models.mlp): (inputs.IMAGES, inputs.FEATURES), _target(models.embedding_bag): (inputs.TOKENS,)}


def check_model_takes(model_cfg, data_cfg) -> None:
    """One line where a model of the project's cannot take the data's inputs (model=cnn on features)."""
    kind = inputs.kind_of(data_cfg)
    takes = TAKES.get(str(model_cfg._target_))
    if takes is None or kind in takes:
        return
    # The built-in bodies' configs are named after their functions (configs/model/cnn.yaml: models.cnn).
    fits = [target.rsplit(".", 1)[-1] for target, kinds in TAKES.items()
            if kind in kinds and target.startswith(models.__name__)]
    raise UserError(f"model {model_cfg.name} takes {' or '.join(takes)}, but {inputs.KEY}={kind} "
                    f"{inputs.SHAPES[kind]}: use model={' or model='.join(fits)}")


def fill_vocabulary(model_cfg, splits) -> None:
    """`model.vocabulary_size` from the token data where it is null; a UserError where it is too small."""
    if splits.inputs != inputs.TOKENS or "vocabulary_size" not in model_cfg:
        return
    needed = inputs.vocabulary_size(splits)
    given = model_cfg.vocabulary_size
    if given is None:
        with open_dict(model_cfg):
            model_cfg.vocabulary_size = needed
        log.info("model.vocabulary_size=null: %d, the largest token id in data=%s + 1", needed, splits.name)
    elif given < needed:
        raise UserError(f"model.vocabulary_size={given}: data={splits.name} holds token ids up to {needed - 1}; "
                        f"set it to at least {needed}, or null (the data's)")
