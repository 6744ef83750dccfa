"""A sweep's end: its comparison report and figure, a search's ranking, and the exit code of the multirun.

It reads the records the runs wrote (keras_loss_recipes.reporting) and what Hydra recorded of the
sweep; the Hydra callback (`callback.SweepReport`, configs/train.yaml) runs it when a multirun ends,
and `python -m keras_loss_recipes.cli.compare <sweep dir>` on demand.
"""
