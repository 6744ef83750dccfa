"""The project's Hydra launcher for SLURM (`hydra/launcher=slurm_cpu | slurm_gpu`, configs/hydra/launcher/).

Hydra loads launchers only from the `hydra_plugins` namespace, hence this
package beside `keras_loss_recipes/`; it holds no recipe logic of its own.
"""
