"""The names of what a run directory holds: one list, read by the layers that write and read them.

Here, below training/ and reporting/, so that both import the names from one place.
"""
from __future__ import annotations

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"  # one row per epoch (keras_loss_recipes/training/callbacks.py: HistoryFile)
BACKUP_DIR = "backup"  # the state of the latest backed-up epoch (keras_loss_recipes/training/backup.py)
LOCK_FILE = ".lock"  # held while a process trains in the directory (keras_loss_recipes/runtime/run_lock.py)
# Written into the run directory before the recipe starts: by Hydra, and the lock.
HYDRA_FILES = {".hydra", "train.log", LOCK_FILE}
# The saved models of a run. A run's test figures are those of LAST_MODEL, the model after the last epoch.
LAST_MODEL = "last.keras"
BEST_MODEL = "best.keras"  # the epoch with the highest validation accuracy
# In their place, the weights of a subclassed model a .keras file would not give back as trained
# (keras_loss_recipes/training/saved_form.py).
LAST_WEIGHTS = "last.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
# Between a run directory's name and the time its contents were moved aside (keras_loss_recipes/lifecycle/directory.py).
MOVED_ASIDE = ".previous-"
