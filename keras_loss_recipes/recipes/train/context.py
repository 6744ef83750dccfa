"""What every step of one training run needs to know (`Training`)."""
from __future__ import annotations

from dataclasses import dataclass

from keras_loss_recipes import losses
from keras_loss_recipes.data import Splits
from keras_loss_recipes.data.pipeline import make_dataset
from keras_loss_recipes.lifecycle.run import Run
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.runtime.session import Session


@dataclass
class Training:
    """The config, the loss it describes, the data, the run (its directory, resume, processes) and the session
    (device, replicas) of one training run."""

    cfg: object
    setup: losses.LossSetup
    splits: Splits
    run: Run
    session: Session

    @property
    def device(self) -> tuple[str, str]:
        return self.session.device

    @property
    def shard(self) -> tuple[int, int]:
        """(this process, processes): this process's part of every batch."""
        return self.run.rank, self.run.processes

    @property
    def split_over(self) -> int:
        """DataParallel splits every batch evenly over its devices; the other strategies need no even split."""
        return self.session.replicas if self.cfg.trainer.distribution == "data_parallel" else 1

    @property
    def verbose(self) -> int:
        """trainer.verbose as Keras reads it ("auto" is 1, the progress bar)."""
        verbose = self.cfg.trainer.verbose
        return 1 if verbose == "auto" else int(verbose)

    def dataset(self, x, y, shuffle: bool):
        """Batches of one split, labels encoded as the formulation needs them; a fresh training dataset draws the
        same seeded orders as the first."""
        labels = self.setup.encode_labels(y, self.splits.num_classes)
        if self.setup.labels == "binary" and labels.ndim == 1:  # task=binary: (N, 1), the one logit's shape,
            labels = labels[:, None]  # which every loss takes (a plain function, tf.nn's op, too)
        return make_dataset(x, labels, self.cfg.trainer.batch_size, shuffle=shuffle, seed=self.cfg.seed,
                            replicas=self.split_over, shard=self.shard, inputs=self.splits.inputs)

    def check_batch_split(self) -> None:
        batch, split_over = self.cfg.trainer.batch_size, self.split_over
        if batch % split_over:
            raise UserError(f"trainer.batch_size={batch}: data_parallel splits every batch over "
                            f"{split_over} devices, so the batch size must be a multiple of {split_over}")
