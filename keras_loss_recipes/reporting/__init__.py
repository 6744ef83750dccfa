"""What a run, the probe and the doctor write: records, reports and figures.

Records and reports: the run directory and metrics.json, history.csv,
TensorBoard HParams, calibration (ECE, reliability diagram), the probe's tables
and figure, the loss doctor's report, what generated pages share. Above it, reading its records:
a sweep's report (keras_loss_recipes.sweeps) and the findings page (keras_loss_recipes.findings).

May import `keras_loss_recipes.runtime` and `losses`; never the recipes, `training` or `data`.
"""
