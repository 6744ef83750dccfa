"""`python -m keras_loss_recipes.recipes.doctor --docs`: examine the keras.io convnet and write docs/doctor.md and docs/doctor.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from keras_loss_recipes.recipes.doctor import DOCS, __doc__ as RECIPE_DOC, write_docs

parser = argparse.ArgumentParser(prog="python -m keras_loss_recipes.recipes.doctor", description=RECIPE_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--docs", action="store_true", required=True,
                    help="examine the keras.io convnet and write docs/doctor.md and docs/doctor.json")
parser.add_argument("--out", type=Path, default=DOCS, help="where to write them (default: docs/)")
write_docs(parser.parse_args().out)
