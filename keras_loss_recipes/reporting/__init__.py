"""What a run, the probe, the doctor and a sweep write: records, reports and figures.

Records and reports: the run directory and metrics.json, history.csv,
TensorBoard HParams, calibration (ECE, reliability diagram), the probe's tables
and figure, the loss doctor's report, and the comparison report of a sweep with its Hydra callback.

May import `keras_loss_recipes.runtime` and `losses`; never the recipes, `training` or `data`.
"""
