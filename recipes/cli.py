"""What train.py does once Hydra has composed the config."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from recipes.errors import UserError
from recipes.results import RunAlreadyFinished

log = logging.getLogger("train")


def main(cfg, run_dir: Path) -> float | None:
    """Run the recipe; user errors become one line on stderr and exit code 2.

    Returns the validation accuracy, the value a Hydra sweeper optimises.
    """
    from recipes import classify, probe

    recipes = {"train": classify.run, "probe": probe.run}
    try:
        metrics = recipes[cfg.recipe.name](cfg, run_dir)
    except RunAlreadyFinished as done:
        log.info("%s already holds a finished run (status %s); not retraining it",
                 done.run_dir, done.metrics.get("status"))
        return done.metrics.get("val_accuracy")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return metrics.get("val_accuracy")
