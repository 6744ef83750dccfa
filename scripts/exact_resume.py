"""Does a killed and resumed run end exactly like an uninterrupted one? Prints both, as JSON.

    python scripts/exact_resume.py [--backend jax] [--kill-after 3] [--out DIR] [override ...]

Runs `python train.py <overrides>` twice in DIR: once through; once SIGKILLed as
soon as its history.csv holds `--kill-after` epochs, then started again with the
same run directory, so it resumes from its backup. Default overrides: the cnn on
2,000 images, 6 epochs, seed 0. Prints the final figures of both runs and
whether every one is identical.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["model=cnn", "data.max_train_examples=2000", "trainer.epochs=6", "seed=0"]
# The figures compared: everything a run reports about its result.
FIGURES = ("val_accuracy", "test_accuracy", "test_loss", "test_exact_ce", "test_ece", "epochs_completed")


def train(run_dir: Path, overrides: list[str], backend: str, kill_after: int | None = None) -> int:
    """Run train.py into `run_dir`; with `kill_after`, SIGKILL it once that many epochs are in history.csv."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"backend={backend}", "trainer.verbose=0",
               f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err.decode()[-2000:])
        return 0
    history = run_dir / "history.csv"
    while process.poll() is None:
        if history.exists() and len(history.read_text().strip().splitlines()) > kill_after:  # header + epochs
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    return process.returncode


def compare(out: Path, overrides: list[str], backend: str, kill_after: int) -> dict:
    whole, killed = out / "uninterrupted", out / "killed"
    started = time.perf_counter()
    train(whole, overrides, backend)
    code = train(killed, overrides, backend, kill_after)
    if code != -signal.SIGKILL:
        raise RuntimeError(f"the run to kill ended by itself (exit {code}) before epoch {kill_after}")
    epochs_at_kill = len((killed / "history.csv").read_text().strip().splitlines()) - 1
    train(killed, overrides, backend)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    return {
        "backend": backend, "overrides": overrides, "killed_after_epoch": epochs_at_kill,
        "uninterrupted": {k: a.get(k) for k in FIGURES},
        "resumed": {k: b.get(k) for k in (*FIGURES, "resumed")},
        "identical": all(a.get(k) == b.get(k) for k in FIGURES),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--kill-after", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="exact_resume_"))
    print(json.dumps(compare(out, args.overrides or DEFAULT, args.backend, args.kill_after), indent=2))


if __name__ == "__main__":
    main()
