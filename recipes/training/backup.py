"""The run's backup: what a resumed run needs to go on exactly as an uninterrupted one would.

    backup/
      epoch-000004/          the state after 4 epochs; a resumed run starts from the newest whole one
        model.weights.h5     the weights and the optimizer's state (Keras's `save_weights`)
        random_state.npz     the layers' seed generators (dropout's masks) and, on PyTorch,
                             torch's global generator (Keras draws unseeded dropout from it)
        manifest.json        the epoch and each file's size; written last, so a folder
                             without it, or with a file of another size, is not whole
      epoch-000003/          the one before, kept as a fallback
      .partial/              a save under way

Each save writes every file once into `.partial/`, then renames the folder:
a kill during a save leaves the earlier backups whole. `every` sets how often
a save happens: every N epochs (`2`), or at the first epoch end once S seconds
have passed since the last save (`30s`, `10min`, `1h`), as Lightning's
`every_n_epochs` and `train_time_interval` do. A resumed run also needs the
training data's shuffling moved on to its epoch (`fast_forward`). Fewer saves
lose more work to a kill, never exactness: the resumed run re-trains the
epochs after its backup with the same batches and random draws.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from recipes.training.save_schedule import Every

log = logging.getLogger(__name__)

WEIGHTS, RANDOM_STATE, MANIFEST, PARTIAL = "model.weights.h5", "random_state.npz", "manifest.json", ".partial"
KEEP = 2  # the newest backup and the one before it
_FOLDER = re.compile(r"epoch-(\d+)")


def folder(backup_dir: Path, epoch: int) -> Path:
    return Path(backup_dir) / f"epoch-{epoch:06d}"


def is_whole(path: Path) -> bool:
    """Whether a backup folder holds every file its manifest names, at the size it names."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return all((path / name).stat().st_size == size for name, size in manifest["sizes"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def latest(backup_dir: Path) -> tuple[int, Path] | None:
    """(epoch, folder) of the newest whole backup in `backup_dir`; None when there is none."""
    found = []
    for path in Path(backup_dir).glob("epoch-*"):
        match = _FOLDER.fullmatch(path.name)
        if match:
            found.append((int(match[1]), path))
    for epoch, path in sorted(found, reverse=True):
        if is_whole(path):
            return epoch, path
        log.warning("backup %s is not whole (a save was cut short): looking for an earlier one", path)
    return None


class Backup(keras.callbacks.Callback):
    """Saves the backup at epoch ends (`every`), restores the newest one when the fit starts, and removes the
    backup folder when training ends. Placed first among the fit's callbacks, so everything else sees the
    restored epoch. `fast_forward(k)` moves the training data's shuffling on by k epochs."""

    def __init__(self, backup_dir: Path, fast_forward=None, every: Every = Every()):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.fast_forward = fast_forward
        self.every = every
        self.found = latest(self.backup_dir)  # (epoch, folder) the fit will resume from; None: from the start
        self.restored = None  # the random state of that backup, once loaded
        self._last_save = time.monotonic()
        self._first_epoch_seen = False

    @property
    def resumes_after(self) -> int:
        """The epochs the fit skips: those of the backup it resumes from (0 without one)."""
        return self.found[0] if self.found else 0

    # Saving -------------------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.params.get("epochs", 0)  # training ends now: the backup would go at once
        if not last and self.every.due(epoch + 1, time.monotonic() - self._last_save):
            self.save(epoch + 1)

    def save(self, epochs_done: int) -> Path:
        partial = self.backup_dir / PARTIAL
        if partial.exists():
            shutil.rmtree(partial)  # what a killed save left
        partial.mkdir(parents=True)
        self.model.save_weights(partial / WEIGHTS)
        np.savez(partial / RANDOM_STATE, **self._random_state())
        sizes = {name: (partial / name).stat().st_size for name in (WEIGHTS, RANDOM_STATE)}
        (partial / MANIFEST).write_text(json.dumps({"epoch": epochs_done, "sizes": sizes}) + "\n")
        target = folder(self.backup_dir, epochs_done)
        if target.exists():
            shutil.rmtree(target)  # an epoch re-trained after a resume from an older backup
        os.replace(partial, target)
        self._prune(keep_from=epochs_done)
        self._last_save = time.monotonic()
        return target

    def _prune(self, keep_from: int) -> None:
        """Remove all but the newest `KEEP` backups up to `keep_from`, and any from epochs after it."""
        folders = sorted((int(m[1]), p) for p in self.backup_dir.glob("epoch-*") if (m := _FOLDER.fullmatch(p.name)))
        kept = [e for e, _ in folders if e <= keep_from][-KEEP:]
        for epoch, path in folders:
            if epoch not in kept:
                shutil.rmtree(path, ignore_errors=True)

    def _seed_states(self) -> list:
        return [v for v in self.model.variables if v.name == "seed_generator_state"]

    def _random_state(self) -> dict:
        states = {f"state_{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(self._seed_states())}
        if keras.backend.backend() == "torch":
            import torch

            states["torch_rng"] = torch.get_rng_state().numpy()
        return states

    # Restoring ----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)  # a run killed before its first save resumes too
        if self.found is None:
            return
        epoch, path = self.found
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(path / WEIGHTS)
        self.model._initial_epoch = epoch  # how Keras's own BackupAndRestore sets the epoch the fit starts at
        with np.load(path / RANDOM_STATE) as saved:
            self.restored = {name: saved[name] for name in saved.files}

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        if self.restored is None:
            return
        if self.fast_forward is not None:
            self.fast_forward(epoch)
        states = self._seed_states()
        saved = self.restored
        if sum(name.startswith("state_") for name in saved) != len(states):
            log.warning("resumed at epoch %d without the layers' random state of that epoch: the run goes on, "
                        "but not exactly as an uninterrupted one would", epoch + 1)
            return
        for i, state in enumerate(states):
            state.assign(saved[f"state_{i}"])
        if "torch_rng" in saved:
            import torch

            torch.set_rng_state(torch.from_numpy(saved["torch_rng"]))
        log.info("resumed at epoch %d with the data order and the random state of that epoch", epoch + 1)

    def on_train_end(self, logs=None):
        shutil.rmtree(self.backup_dir, ignore_errors=True)  # finished: nothing left to resume
