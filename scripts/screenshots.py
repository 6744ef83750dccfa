"""Regenerate the dashboard screenshots in docs/img/ from a real sweep and a real TensorBoard.

    python scripts/screenshots.py            # needs Debian's chromium (apt-get install chromium)

Runs a small stress sweep (3 formulations, about a minute on 2 CPU cores),
starts `tensorboard` on it (loopback only), and takes headless-Chromium
screenshots of the stability scalars, the HParams table and the comparison
figure. Everything runs locally; the server is stopped at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.tensorboard_server import serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
SHOTS = {
    "tensorboard_stability_scalars.png": "#scalars&tagFilter=stability%2F(loss_gap%7Csaturated%7Clogit_grad%7Cexact)",
    "tensorboard_hparams.png": "#hparams",
    "tensorboard_comparison.png": "#images",
}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000", "--virtual-time-budget=20000",
]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("error: chromium not found; install Debian's package: apt-get install chromium", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        print("running a small stress sweep ...", flush=True)
        subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "-m", "experiment=stability_stress",
             "loss=sparse_from_logits,clipped_probs,naive", "trainer.verbose=0", f"hydra.sweep.dir={sweep}"],
            cwd=ROOT, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with serve(sweep) as base:
            for name, fragment in SHOTS.items():
                with tempfile.TemporaryDirectory() as profile:
                    subprocess.run(
                        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={OUT / name}", base + fragment],
                        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                    )
                print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
