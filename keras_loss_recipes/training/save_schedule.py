"""How often the run saves its backup: `trainer.backup_every` (keras_loss_recipes/training/backup.py saves it).

Kept apart from the backup itself, which needs Keras: the config check reads it before Keras starts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from keras_loss_recipes.runtime.errors import UserError

_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Every:
    """How often to save: every `epochs` epochs, or once `seconds` have passed since the last save."""

    epochs: int | None = 1
    seconds: float | None = None

    def due(self, epoch: int, since_last_save: float) -> bool:
        """Whether to save after `epoch` (1-based) epochs, `since_last_save` seconds after the last save."""
        if self.seconds is not None:
            return since_last_save >= self.seconds
        return epoch % self.epochs == 0


def parse_every(value) -> Every:
    """`trainer.backup_every`: a whole number of epochs (>= 1), or a duration such as `30s`, `10min`, `1h`."""
    text = str(value).strip()
    if text.isdigit() and int(text) >= 1:
        return Every(epochs=int(text))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)", text)
    if match and float(match[1]) > 0:
        return Every(epochs=None, seconds=float(match[1]) * _UNITS[match[2]])
    raise UserError(f"trainer.backup_every={value}: valid choices: a whole number of epochs (1, 2, ...) or a "
                    "duration (30s, 10min, 1h)")
