"""The findings page: what `python scripts/findings.py` measured, as data, figures and Markdown.

A docs generator, apart from the records a run writes: it reads those records
(keras_loss_recipes.reporting) and only scripts/findings.py imports it.
"""
