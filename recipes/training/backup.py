"""The run's backup: what a resumed run needs to go on exactly as an uninterrupted one would.

    backup/
      epoch-000004/          the state after 4 epochs; a resumed run starts from the newest whole one
        state.npz            the model's weights and its layers' seed generators (dropout's
                             masks), the optimizer's variables, torch's global generator on
                             PyTorch (Keras draws unseeded dropout from it), and what other
                             callbacks keep (`extras`: the best epoch's weights for best.keras)
        manifest.json        the epoch, the variables' shapes and the file's size; written last,
                             so a folder without it, or with a file of another size, is not whole
      epoch-000003/          the one before, kept as a fallback
      .partial/              a save under way

Each save writes every file once into `.partial/`, then renames the folder:
a kill during a save leaves the earlier backups whole. A resume checks the
newest backup (its manifest, its file's size, and every array's CRC-32 as it
reads back) and, if it is damaged, says so and takes the one before it. `every` sets how often
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

from recipes.runtime.errors import UserError, writing
from recipes.training.save_schedule import Every

log = logging.getLogger(__name__)

STATE, MANIFEST, PARTIAL = "state.npz", "manifest.json", ".partial"
KEEP = 2  # the newest backup and the one before it
_FOLDER = re.compile(r"epoch-(\d+)")


def host_copy(variable) -> np.ndarray:
    """A variable's value as a numpy array of its own. On a CPU, JAX and PyTorch hand out their buffers, which
    the next steps overwrite; and under tf.distribute a scalar's `.value` is a MirroredVariable numpy cannot
    read, so the variable itself is converted."""
    return np.array(keras.ops.convert_to_numpy(variable), copy=True)


def folder(backup_dir: Path, epoch: int) -> Path:
    return Path(backup_dir) / f"epoch-{epoch:06d}"


def problem_of(path: Path) -> str | None:
    """What makes a backup folder unusable (None when it is whole): no manifest (a save cut short), a file of
    another size than the manifest says, or an archive that does not read back (zip's CRC-32 of every array)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        sizes = manifest["sizes"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}: its save was cut short"
    for name, size in sizes.items():
        try:
            actual = (path / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} is {actual} bytes, its manifest says {size}"
    try:
        with np.load(path / STATE) as saved:
            for name in saved.files:
                saved[name]  # reading checks the array's CRC-32
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError: a damaged archive
        return f"{STATE} does not read back ({type(err).__name__}: {err})"
    return None


def latest(backup_dir: Path) -> tuple[int, Path] | None:
    """(epoch, folder) of the newest whole backup in `backup_dir`; None when there is none at all. A damaged
    newest one is passed over, with a warning naming it and the one used instead; when every one is damaged,
    UserError: a resume never starts over silently."""
    found = []
    for path in Path(backup_dir).glob("epoch-*"):
        match = _FOLDER.fullmatch(path.name)
        if match:
            found.append((int(match[1]), path))
    damaged = []
    for epoch, path in sorted(found, reverse=True):
        problem = problem_of(path)
        if problem is None:
            for bad, why in damaged:
                log.warning("backup %s is damaged (%s): resuming from %s, the one before it", bad, why, path)
            return epoch, path
        damaged.append((path, problem))
    if damaged:
        raise UserError(f"no whole backup in {backup_dir} to resume from ("
                        + "; ".join(f"{path.name}: {why}" for path, why in damaged)
                        + "); pass trainer.overwrite=true to move the run aside and start over")
    return None


class Backup(keras.callbacks.Callback):
    """Saves the backup at epoch ends (`every`), restores the newest one when the fit starts, and removes the
    backup folder when training ends. Placed last among the fit's callbacks, so that a saved epoch is already
    in the history and the logs (a kill between the two trains it again). `fast_forward(k)` moves the training data's shuffling on by k epochs. `extras`: objects
    with `backup_state() -> {name: array}` and `restore_state(arrays)`, saved and restored with the rest.
    `before_save`: callables run before each save (the event files' flush: the logs of the epochs a backup
    holds are on disk before it is)."""

    def __init__(self, backup_dir: Path, fast_forward=None, every: Every = Every(), extras=(), before_save=()):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.fast_forward = fast_forward
        self.every = every
        self.extras = list(extras)
        self.before_save = list(before_save)
        self.found = latest(self.backup_dir)  # (epoch, folder) the fit will resume from; None: from the start
        self._torch_rng = None  # put back when the first epoch begins
        self._last_save = time.monotonic()
        self._first_epoch_seen = False

    @property
    def resumes_after(self) -> int:
        """The epochs the fit skips: those of the backup it resumes from (0 without one)."""
        return self.found[0] if self.found else 0

    def _variables(self) -> dict:
        """What a resumed run needs: the model's weights, its layers' seed generators (not weights in Keras's
        sense) and the optimizer's variables. Not the metrics': every epoch starts them afresh."""
        seeds = [v for v in self.model.variables if v.name == "seed_generator_state"]
        optimizer = self.model.optimizer
        return {"model": [*self.model.weights, *seeds], "optimizer": list(optimizer.variables) if optimizer else []}

    # Saving -------------------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.params.get("epochs", 0)  # training ends now: the backup would go at once
        if not last and self.every.due(epoch + 1, time.monotonic() - self._last_save):
            self.save(epoch + 1)

    def save(self, epochs_done: int) -> Path:
        """Take the state now and write it. (Written in a thread while the next epoch trained, it measured
        slower on 2 CPU cores, though within the machine's noise (benchmarks/gpu_proxy.py); this is simpler.)"""
        for each in self.before_save:
            each()
        arrays, shapes = {}, {}
        for group, variables in self._variables().items():
            values = [host_copy(v) for v in variables]
            arrays.update({f"{group}/{i}": value for i, value in enumerate(values)})
            shapes[group] = [list(value.shape) for value in values]
        if keras.backend.backend() == "torch":
            import torch

            arrays["torch_rng"] = torch.get_rng_state().numpy()
        for extra in self.extras:
            arrays.update({f"extra/{name}": value for name, value in extra.backup_state().items()})
        self._last_save = time.monotonic()
        return self._write(epochs_done, arrays, shapes)

    def _write(self, epochs_done: int, arrays: dict, shapes: dict) -> Path:
        partial = self.backup_dir / PARTIAL
        if partial.exists():
            shutil.rmtree(partial)  # what a killed save left
        partial.mkdir(parents=True)
        with writing(partial / STATE):
            np.savez(partial / STATE, **arrays)
        manifest = {"epoch": epochs_done, "shapes": shapes, "sizes": {STATE: (partial / STATE).stat().st_size}}
        (partial / MANIFEST).write_text(json.dumps(manifest) + "\n")
        target = folder(self.backup_dir, epochs_done)
        if target.exists():
            shutil.rmtree(target)  # an epoch trained again after a resume from an older backup
        os.replace(partial, target)
        self._prune(keep_from=epochs_done)
        return target

    def _prune(self, keep_from: int) -> None:
        """Keep the newest `KEEP` backups up to `keep_from`; remove the others, and any from epochs after it."""
        folders = sorted((int(m[1]), p) for p in self.backup_dir.glob("epoch-*") if (m := _FOLDER.fullmatch(p.name)))
        kept = [e for e, _ in folders if e <= keep_from][-KEEP:]
        for epoch, path in folders:
            if epoch not in kept:
                shutil.rmtree(path, ignore_errors=True)

    # Restoring ----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)  # a run killed before its first save resumes too
        if self.found is None:
            return
        epoch, path = self.found
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        manifest = json.loads((path / MANIFEST).read_text())
        variables = self._variables()
        mine = {group: [list(v.shape) for v in vs] for group, vs in variables.items()}
        if manifest["shapes"] != mine:
            raise UserError(f"the backup in {path} was saved by another model or optimizer "
                            f"({sum(map(len, manifest['shapes'].values()))} variables, this run has "
                            f"{sum(map(len, mine.values()))} or other shapes); pass trainer.overwrite=true to move "
                            "the earlier run aside and start over")
        with np.load(path / STATE) as saved:
            for group, vs in variables.items():
                for i, variable in enumerate(vs):
                    variable.assign(saved[f"{group}/{i}"])
            self._torch_rng = saved["torch_rng"] if "torch_rng" in saved.files else None
            extra = {name[len("extra/"):]: saved[name] for name in saved.files if name.startswith("extra/")}
        for each in self.extras:
            each.restore_state(extra)
        self.model._initial_epoch = epoch  # how Keras's own BackupAndRestore sets the epoch the fit starts at

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        if self.found is None:
            return
        if self.fast_forward is not None:
            self.fast_forward(epoch)
        if self._torch_rng is not None:
            import torch

            torch.set_rng_state(torch.from_numpy(self._torch_rng))
        log.info("resumed at epoch %d with the weights, optimizer, data order and random state of that epoch",
                 epoch + 1)

    def on_train_end(self, logs=None):
        shutil.rmtree(self.backup_dir, ignore_errors=True)  # finished: nothing left to resume
