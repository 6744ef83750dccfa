"""The sample Optuna search in docs/sweeps.md: runs it and pastes what it printed.

    python scripts/optuna_sample.py

Runs the 4-trial search of `OVERRIDES` with `python train.py` in a temporary
directory, takes its closing summary (the ranked trials and the best one) and
writes it between the markers in docs/sweeps.md, with the CPU and the date.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_loss_recipes.runtime.backends import cpu_name  # noqa: E402
PAGE = ROOT / "docs" / "sweeps.md"
BEGIN, END = "<!-- optuna sample: scripts/optuna_sample.py -->", "<!-- end of optuna sample -->"
OVERRIDES = ["hparams_search=optuna", "hydra.sweeper.n_trials=4", "model=mlp", "data.max_train_examples=300",
             "trainer.epochs=1"]


def summary_of(output: str) -> str:
    """The search's closing summary: from `search summary (` to the `best:` line."""
    start = output.index("search summary (")
    lines = output[start:].splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("best: ") or line.startswith("no trial"))
    return "\n".join(lines[: end + 1])


def run_search() -> str:
    with tempfile.TemporaryDirectory(prefix="optuna-sample-") as scratch:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), *OVERRIDES, "trainer.verbose=0",
                               f"hydra.sweep.dir={scratch}/sweep"], cwd=scratch, env=env, capture_output=True,
                              text=True, timeout=1800)
        if done.returncode:
            raise SystemExit(f"the search failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return summary_of(done.stdout + done.stderr)


def block(summary: str) -> str:
    command = "python train.py " + " ".join(OVERRIDES)
    return (f"{BEGIN}\n  A 4-trial search (`{command}`) ended with this, on {os.cpu_count()} cores of "
            f"{cpu_name()}, {time.strftime('%Y-%m-%d')}:\n\n  ```\n"
            + "\n".join(f"  {line}" for line in summary.splitlines()) + f"\n  ```\n  {END}")


def main() -> None:
    page = PAGE.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{PAGE}: the markers {BEGIN} ... {END} are missing")
    before, rest = page.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    print("running the 4-trial search (about a minute on 2 cores) ...", file=sys.stderr, flush=True)
    PAGE.write_text(before + block(run_search()) + after)
    print(f"wrote the sample into {PAGE}")


if __name__ == "__main__":
    main()
