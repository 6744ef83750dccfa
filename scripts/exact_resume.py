"""Train straight through and killed-then-resumed; print both runs' figures as JSON.

    python scripts/exact_resume.py [--backend jax] [--kill-after 3] [--signal int] [--out DIR] [override ...]

Runs `python train.py <overrides>` twice in DIR: once through; once stopped
right after epoch `--kill-after` (SIGKILL, or with `--signal int` SIGINT, which
is Ctrl-C), then started again with the same run directory, so it resumes from
its backup. The run to stop holds still after that epoch until the signal comes
(RECIPES_HOLD_AFTER_EPOCH, tests/hold.py), so it is stopped there on
any machine, however fast. Default overrides: the cnn on
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
sys.path.insert(0, str(ROOT))

from keras_loss_recipes.reporting.results import read_history, read_metrics  # noqa: E402
from keras_loss_recipes.runtime.run_files import BACKUP_DIR  # noqa: E402
from tests import hold  # noqa: E402

DEFAULT = ["model=cnn", "data.max_train_examples=2000", "trainer.epochs=6", "seed=0"]
# How the run is stopped: the signal, and the exit status it must end with.
SIGNALS = {"kill": (signal.SIGKILL, -signal.SIGKILL), "int": (signal.SIGINT, 130)}
# The figures compared: everything a run reports about its result.
FIGURES = ("val_accuracy", "test_accuracy", "test_loss", "test_exact_ce", "test_ece", "epochs_completed")


def train(run_dir: Path, overrides: list[str], backend: str, kill_after: int | None = None,
          how: str = "kill") -> tuple[int, str]:
    """Run train.py into `run_dir`; with `kill_after`, stop it (`SIGNALS[how]`) while it holds after that
    epoch. Returns its exit status and what it printed on stderr."""
    # The project first; a user's own modules (model._target_=...) where their PYTHONPATH says.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
    for name in (hold.EPOCH_VAR, hold.PROCESS_VAR):
        env.pop(name, None)
    if kill_after is not None:
        env.update(hold.asked(**{hold.EPOCH_VAR: str(kill_after)}))
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"backend={backend}", "trainer.verbose=0",
               f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=hold.ctrl_c_restored)
    if kill_after is None:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err.decode()[-2000:])
        return 0, err.decode()
    if hold.wait_until_held(process, run_dir / BACKUP_DIR / hold.NOTICE):
        process.send_signal(SIGNALS[how][0])
    _, err = process.communicate()
    return process.returncode, err.decode()


def compare(out: Path, overrides: list[str], backend: str, kill_after: int, how: str = "kill") -> dict:
    whole, killed = out / "uninterrupted", out / "killed"
    started = time.perf_counter()
    train(whole, overrides, backend)
    code, said = train(killed, overrides, backend, kill_after, how)
    if code != SIGNALS[how][1]:
        raise RuntimeError(f"the run to stop with SIG{how.upper()} ended with exit {code} instead of "
                           f"{SIGNALS[how][1]} (it never held after epoch {kill_after}: fewer epochs?)")
    epochs_at_kill = len(read_history(killed))
    train(killed, overrides, backend)
    a, b = (read_metrics(d) for d in (whole, killed))
    return {
        "backend": backend, "overrides": overrides, "signal": f"SIG{how.upper()}",
        "killed_after_epoch": epochs_at_kill, "stopped_said": said.strip().splitlines()[-1:],
        "uninterrupted": {k: a.get(k) for k in FIGURES},
        "resumed": {k: b.get(k) for k in (*FIGURES, "resumed")},
        "identical": all(a.get(k) == b.get(k) for k in FIGURES),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--kill-after", type=int, default=3)
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="kill",
                        help="kill: SIGKILL (default); int: SIGINT, as Ctrl-C")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="exact_resume_"))
    print(json.dumps(compare(out, args.overrides or DEFAULT, args.backend, args.kill_after, args.signal), indent=2))


if __name__ == "__main__":
    main()
