"""What a run, the probe and the doctor write: records, reports and figures.

Records and reports: the run directory and metrics.json, history.csv,
TensorBoard HParams, calibration (ECE, reliability diagram), the probe's tables
and figure, the loss doctor's report, and the findings page. A sweep's report is
keras_loss_recipes.sweeps, the layer above.

May import `keras_loss_recipes.runtime` and `losses`; never the recipes, `training` or `data`.
"""
