"""From the command line (`python train.py`, `recipes-train`) to the recipe it runs.

Each module's job: the first line of its docstring (docs/layout.md lists them all).
"""
