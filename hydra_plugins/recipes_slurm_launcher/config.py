"""The settings of the recording SLURM launcher (slurm_launcher.py): submitit_slurm's, and its own.

Registered as `hydra/launcher=recording_slurm`, which the presets start from
(configs/hydra/launcher/slurm_*.yaml). Without `from __future__ import annotations`:
Hydra runs this module without putting it in sys.modules, where dataclasses cannot
resolve annotations given as text.
"""
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # requirements-sweeps.txt is not installed: no SLURM presets (slurm_launcher.py)
    SlurmQueueConf = None

if SlurmQueueConf is not None:
    @dataclass
    class RecordingSlurmQueueConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.recipes_slurm_launcher.slurm_launcher.RecordingSlurmLauncher"
        # A job stopped by a preemption signal (its step saved) requeues itself and resumes there.
        requeue_preempted: bool = True
        # How often, at most, the sweep asks SLURM (sacct) whether a job ended without a result (cancelled,
        # past its limit, its node lost); None: submitit's own back-off, which reaches 10 minutes.
        poll_interval_s: Optional[float] = None
        # Once SLURM says a job ended, how long its result file is waited for (a shared file system may show
        # it late): submitit's 15 s.
        result_wait_s: float = 15.0
        # A job a fault ended without a result (killed, its node lost, past its limit) is submitted again, to
        # resume from its backup, up to this many times; 0: recorded as failed (the same command resumes it).
        max_resubmits: int = 0

    ConfigStore.instance().store(group="hydra/launcher", name="recording_slurm", node=RecordingSlurmQueueConf(),
                                 provider="recipes")
