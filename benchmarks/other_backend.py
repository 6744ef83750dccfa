"""One other Keras backend's float32 sides, measured in a worker process of the benchmark.

    KERAS_BACKEND=jax python benchmarks/other_backend.py --backend jax --precisions float32 ...

Runs throughput.py's own measurement in this process with the arguments given
(written to a scratch directory, no page), passes its progress lines on, and
hands the float32 summary back as one result line (keras_loss_recipes.runtime.workers).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import throughput  # noqa: E402
from keras_loss_recipes.runtime.workers import report  # noqa: E402


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as out:
        code = throughput.main([*argv, "--out", out, "--no-docs"])
        report(json.loads((Path(out) / "performance.json").read_text())["summary"]["float32"])
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
