"""The project's Hydra launcher for SLURM: `hydra/launcher=slurm_cpu` or `slurm_gpu`.

Hydra loads launchers only from the `hydra_plugins` namespace, hence this
package beside `keras_loss_recipes/`; it holds no recipe logic of its own.
"""
