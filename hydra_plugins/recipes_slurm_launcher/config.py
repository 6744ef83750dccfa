"""The settings of the recording SLURM launcher (slurm_launcher.py): submitit_slurm's, and its own.

Registered as `hydra/launcher=recording_slurm`, which the presets start from
(configs/hydra/launcher/slurm_*.yaml). Without `from __future__ import annotations`:
Hydra runs this module without putting it in sys.modules, where dataclasses cannot
resolve annotations given as text.
"""
from dataclasses import dataclass

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

    ConfigStore.instance().store(group="hydra/launcher", name="recording_slurm", node=RecordingSlurmQueueConf(),
                                 provider="recipes")
