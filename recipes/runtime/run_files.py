"""The names of what a run directory holds: one list, read by the layers that write and read them.

Here, below training/ and reporting/, so that both import the names from one place.
"""
from __future__ import annotations

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"  # one row per epoch, written by Keras's CSVLogger
BACKUP_DIR = "backup"  # the state of the latest backed-up epoch (recipes/training/backup.py)
# Written by Hydra into the run directory before the recipe starts.
HYDRA_FILES = {".hydra", "train.log"}
# The saved models of a run. A run's test figures are those of LAST_MODEL, the model after the last epoch.
LAST_MODEL = "last.keras"
BEST_MODEL = "best.keras"  # the epoch with the highest validation accuracy
