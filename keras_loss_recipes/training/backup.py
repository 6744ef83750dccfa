"""The run's backup: what a resumed run needs to go on exactly as an uninterrupted one would.

    backup/
      epoch-000004/          the state after 4 epochs; a resumed run starts from the newest whole one
      epoch-000004-step-000007/
                             the state after 4 epochs and 7 steps of the fifth: written when a
                             preemption stops the run there (keras_loss_recipes/training/preemption_stop.py),
                             with the epoch's running figures (its metrics' variables)
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
training data's shuffling moved on to its epoch (`fast_forward`); one resumed in
the middle of an epoch also has the epoch's first steps pass over their batches
without training (`StepCounter.skip_first`). Fewer saves lose more work to a kill,
never exactness: the resumed run re-trains the epochs after its backup with the
same batches and random draws. The backup stays until the run's record is written
(`remove`): a run stopped during its test evaluation resumes too.
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

from keras_loss_recipes.runtime import preemption, private_api
from keras_loss_recipes.runtime.errors import UserError, writing
from keras_loss_recipes.training.save_schedule import Every

log = logging.getLogger(__name__)

STATE, MANIFEST, PARTIAL = "state.npz", "manifest.json", ".partial"
KEEP = 2  # the newest backup and the one before it
_FOLDER = re.compile(r"epoch-(\d+)(?:-step-(\d+))?")


def host_copy(variable) -> np.ndarray:
    """A variable's value as a numpy array of its own. On a CPU, JAX and PyTorch hand out their buffers, which
    the next steps overwrite; and under tf.distribute a scalar's `.value` is a MirroredVariable numpy cannot
    read, so the variable itself is converted."""
    return np.array(keras.ops.convert_to_numpy(variable), copy=True)


def folder(backup_dir: Path, epoch: int, step: int = 0) -> Path:
    """The backup after `epoch` epochs and `step` steps of the next one."""
    return Path(backup_dir) / (f"epoch-{epoch:06d}" + (f"-step-{step:06d}" if step else ""))


def _folders(backup_dir: Path) -> list[tuple[tuple[int, int], Path]]:
    """((epoch, step), folder) of every backup folder in `backup_dir`, oldest first."""
    matches = ((_FOLDER.fullmatch(path.name), path) for path in Path(backup_dir).glob("epoch-*"))
    return sorted(((int(m[1]), int(m[2] or 0)), path) for m, path in matches if m)


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


def latest(backup_dir: Path) -> tuple[int, int, Path] | None:
    """(epoch, step, folder) of the newest whole backup in `backup_dir`; None when there is none at all. A
    damaged newest one is passed over, with a warning naming it and the one used instead; when every one is
    damaged, UserError: a resume never starts over silently."""
    damaged = []
    for (epoch, step), path in reversed(_folders(backup_dir)):
        problem = problem_of(path)
        if problem is None:
            for bad, why in damaged:
                log.warning("backup %s is damaged (%s): resuming from %s, the one before it", bad, why, path)
            return epoch, step, path
        damaged.append((path, problem))
    if damaged:
        raise UserError(f"no whole backup in {backup_dir} to resume from ("
                        + "; ".join(f"{path.name}: {why}" for path, why in damaged)
                        + "); pass trainer.overwrite=true to move the run aside and start over")
    return None


class Backup(keras.callbacks.Callback):
    """Saves the backup at epoch ends (`every`) and when a preemption stops the fit, restores the newest one
    when the fit starts. Placed last among the fit's callbacks, so that a saved epoch is already in the history
    and the logs (a kill between the two trains it again). `fast_forward(k)` moves the training data's
    shuffling on by k epochs; `steps` (a StepCounter) makes a resume in the middle of an epoch pass over the
    steps it had done, whose running figures go into the metrics once `batch_spec()` has built them.
    `extras`: objects with `backup_state() -> {name: array}` and `restore_state(arrays)`, saved and restored
    with the rest. `before_save`: callables run before each save (the event files' flush: the logs of the
    epochs a backup holds are on disk before it is)."""

    def __init__(self, backup_dir: Path, fast_forward=None, every: Every = Every(), extras=(), before_save=(),
                 steps=None, batch_spec=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.fast_forward = fast_forward
        self.every = every
        self.extras = list(extras)
        self.before_save = list(before_save)
        self.steps = steps
        self.batch_spec = batch_spec  # () -> (images, labels) as symbolic tensors: builds unbuilt metrics
        self.found = latest(self.backup_dir)  # (epoch, step, folder) the fit resumes from; None: from the start
        self._torch_rng = self._metrics = None  # put back when the first epoch begins (or its first step)
        self._last_save = time.monotonic()
        self._first_epoch_seen = False

    @property
    def resumes_after(self) -> int:
        """The whole epochs the fit skips: those of the backup it resumes from (0 without one)."""
        return self.found[0] if self.found else 0

    @property
    def resumes_at_step(self) -> int:
        """The steps of the next epoch the backup holds (0: it was saved at an epoch's end)."""
        return self.found[1] if self.found else 0

    def _variables(self) -> dict:
        """What a resumed run needs: the model's weights, its layers' seed generators (not weights in Keras's
        sense) and the optimizer's variables. The metrics' only in the middle of an epoch (`save`): every epoch
        starts them afresh."""
        seeds = [v for v in self.model.variables if v.name == "seed_generator_state"]
        optimizer = self.model.optimizer
        return {"model": [*self.model.weights, *seeds], "optimizer": list(optimizer.variables) if optimizer else []}

    # Saving -------------------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= self.params.get("epochs", 0)  # training ends now: the backup would go at once
        if preemption.requested() is not None:
            # The epoch under way when the signal came is over: save it whatever `every` says, and stop.
            self.save(epoch + 1)
            raise preemption.Preempted(preemption.requested(), kept=f"epoch {epoch + 1}")
        if not last and self.every.due(epoch + 1, time.monotonic() - self._last_save):
            self.save(epoch + 1)

    def save(self, epochs_done: int, step: int = 0) -> Path:
        """Take the state now and write it: after `epochs_done` epochs and `step` steps of the next (then the
        epoch's running figures too). (Written in a thread while the next epoch trained, it measured slower on
        2 CPU cores, though within the machine's noise (benchmarks/gpu_proxy.py); this is simpler.)"""
        for each in self.before_save:
            each()
        groups = self._variables()
        paths = {}
        if step:  # the epoch's running figures, by name: a fresh model builds some metrics only when it trains
            groups["metrics"] = list(self.model.metrics_variables)
            paths["metrics"] = [v.path for v in groups["metrics"]]
        arrays, shapes = {}, {}
        for group, variables in groups.items():
            values = [host_copy(v) for v in variables]
            arrays.update({f"{group}/{i}": value for i, value in enumerate(values)})
            shapes[group] = [list(value.shape) for value in values]
        if keras.backend.backend() == "torch":
            import torch

            arrays["torch_rng"] = torch.get_rng_state().numpy()
        for extra in self.extras:
            arrays.update({f"extra/{name}": value for name, value in extra.backup_state().items()})
        self._last_save = time.monotonic()
        return self._write(epochs_done, step, arrays, {"shapes": shapes, **({"paths": paths} if paths else {})})

    def _write(self, epochs_done: int, step: int, arrays: dict, described: dict) -> Path:
        partial = self.backup_dir / PARTIAL
        if partial.exists():
            shutil.rmtree(partial)  # what a killed save left
        partial.mkdir(parents=True)
        with writing(partial / STATE):
            np.savez(partial / STATE, **arrays)
        manifest = {"epoch": epochs_done, "step": step, **described,
                    "sizes": {STATE: (partial / STATE).stat().st_size}}
        (partial / MANIFEST).write_text(json.dumps(manifest) + "\n")
        target = folder(self.backup_dir, epochs_done, step)
        if target.exists():
            shutil.rmtree(target)  # a point trained again after a resume from an older backup
        os.replace(partial, target)
        self._prune(keep_upto=(epochs_done, step))
        return target

    def _prune(self, keep_upto: tuple[int, int]) -> None:
        """Keep the newest `KEEP` backups up to `keep_upto` (epoch, step); remove the others, and any after it."""
        folders = _folders(self.backup_dir)
        kept = [point for point, _ in folders if point <= keep_upto][-KEEP:]
        for point, path in folders:
            if point not in kept:
                shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        """The run's record is written: nothing left to resume."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)

    # Restoring ----------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)  # a run killed before its first save resumes too
        if self.found is None:
            return
        epoch, step, path = self.found
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        manifest = json.loads((path / MANIFEST).read_text())
        variables = self._variables()
        mine = {group: [list(v.shape) for v in vs] for group, vs in variables.items()}
        if {group: manifest["shapes"].get(group) for group in mine} != mine:
            raise UserError(f"the backup in {path} was saved by another model or optimizer "
                            f"({sum(map(len, manifest['shapes'].values()))} variables, this run has "
                            f"{sum(map(len, mine.values()))} or other shapes); pass trainer.overwrite=true to move "
                            "the earlier run aside and start over")
        with np.load(path / STATE) as saved:
            for group, vs in variables.items():
                for i, variable in enumerate(vs):
                    variable.assign(saved[f"{group}/{i}"])
            self._torch_rng = saved["torch_rng"] if "torch_rng" in saved.files else None
            if step:
                self._metrics = {path: saved[f"metrics/{i}"] for i, path in enumerate(manifest["paths"]["metrics"])}
            extra = {name[len("extra/"):]: saved[name] for name in saved.files if name.startswith("extra/")}
        for each in self.extras:
            each.restore_state(extra)
        private_api.start_fit_at(self.model, epoch)

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        if self.found is None:
            return
        if self.fast_forward is not None:
            self.fast_forward(epoch)
        step = self.resumes_at_step
        if step:
            self._restore_metrics()
            # Torch's generator is put back once the epoch's data loader exists (making it draws from it).
            self.steps.skip_first(step, then=self._restore_torch_rng)
            log.info("resumed at epoch %d step %d with the weights, optimizer, data order, running figures and "
                     "random state of that step", epoch + 1, step + 1)
            return
        self._restore_torch_rng()
        log.info("resumed at epoch %d with the weights, optimizer, data order and random state of that epoch",
                 epoch + 1)

    def _restore_metrics(self) -> None:
        """After Keras has reset the metrics for the epoch: they go on from the step's running figures. Some
        are built only when the first step is traced (TensorFlow's compiled metrics): built here first."""
        if not all(getattr(metric, "built", True) for metric in self.model.metrics) and self.batch_spec is not None:
            private_api.build_for_batch(self.model, self.batch_spec())
        mine = {v.path: v for v in self.model.metrics_variables}
        if set(mine) != set(self._metrics):
            raise UserError(f"the backup of {self.found[2]} holds the running figures of other metrics "
                            f"({', '.join(sorted(set(self._metrics) ^ set(mine)))}); pass trainer.overwrite=true to "
                            "move the earlier run aside and start over")
        for path, value in self._metrics.items():
            mine[path].assign(value)

    def _restore_torch_rng(self) -> None:
        if self._torch_rng is not None:
            import torch

            torch.set_rng_state(torch.from_numpy(self._torch_rng))
