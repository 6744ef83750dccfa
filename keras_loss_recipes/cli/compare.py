"""(Re)build the comparison report of a sweep: comparison.md, .csv, .png and the TensorBoard text.

    python -m keras_loss_recipes.cli.compare runs/sweeps/<time>
    python -m keras_loss_recipes.cli.compare runs/sweeps/<time> --no-tensorboard
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_loss_recipes.sweeps.comparison import write_report
from keras_loss_recipes.runtime.errors import UserError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_loss_recipes.cli.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun's sweep directory (runs/sweeps/<time>)")
    parser.add_argument("--no-tensorboard", action="store_true", help="skip the TensorBoard text and image")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dir, tensorboard=not args.no_tensorboard)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report["table"], end="")
    if report["kind"] == "search":
        print(report["best"])
    print(f"wrote comparison.csv, comparison.md, comparison.png to {args.sweep_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
