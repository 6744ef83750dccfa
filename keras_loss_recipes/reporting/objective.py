"""What a sweeper optimises: `optimized_metric`, one of the last epoch's validation figures.

    optimized_metric   direction   the figure
    val_accuracy       maximize    validation accuracy (the default)
    val_exact_ce       minimize    validation cross entropy of the logits, whatever the loss
    val_loss           minimize    validation loss: the formulation's own, not comparable across losses

Never a test figure: a search that picks by the test split has no test split left.
The direction belongs to the figure, so a preset names the figure only and reads the
direction with `${objective_direction:${optimized_metric}}`.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras_loss_recipes.runtime.errors import UserError


@dataclass(frozen=True)
class Objective:
    key: str  # in metrics.json (the last epoch's) and, per epoch, in history.csv
    direction: str  # "maximize" or "minimize": the way the figure gets better
    name: str  # in words, for reports
    column: str  # a short column heading

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


OBJECTIVES = {o.key: o for o in (
    Objective("val_accuracy", "maximize", "validation accuracy", "val_acc"),
    Objective("val_exact_ce", "minimize", "validation exact cross entropy", "val_CE"),
    Objective("val_loss", "minimize", "validation loss", "val_loss"),
)}
VALIDATION_FIGURES = tuple(OBJECTIVES)
DEFAULT = "val_accuracy"
RESOLVER = "objective_direction"


def objective(key) -> Objective:
    """The objective `optimized_metric=key` names; UserError for anything else."""
    if key not in OBJECTIVES:
        raise UserError(f"optimized_metric={key!r}: valid choices: {', '.join(OBJECTIVES)} "
                        "(validation figures; a search never picks by the test split)")
    return OBJECTIVES[key]


def direction(key) -> str:
    return objective(key).direction
