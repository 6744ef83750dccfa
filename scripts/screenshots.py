"""Regenerate the docs/img/ screenshots from a real sweep in a real TensorBoard.

    python scripts/screenshots.py            # needs Debian's chromium (apt-get install chromium)

Runs a small stress sweep (3 formulations, a minute or two on 2 CPU cores),
starts `tensorboard` on it (loopback only), checks through TensorBoard's own
HTTP API that the views open on what they should (the HParams table on the
swept `loss`, `loss_path` and `status`; the custom-scalars layout), then takes
headless-Chromium screenshots and checks that each one holds a picture, not a
blank page. Everything runs locally; the server is stopped at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.tensorboard_server import get_json, hparams_default_columns, serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
SHOTS = {
    "tensorboard_custom_scalars.png": "#custom_scalars",
    "tensorboard_hparams.png": "#hparams",
    "tensorboard_text.png": "#text",
    "tensorboard_comparison.png": "#images",
}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1800,1000", "--virtual-time-budget=20000",
]
SWEEP = ["experiment=stability_stress", "loss=sparse_from_logits,clipped_probs,naive", "trainer.verbose=0"]


def check_views(base: str) -> None:
    """What the screenshots must show, asked of the server: fail loudly rather than ship a wrong picture."""
    hparams, metrics = hparams_default_columns(base)
    for name in ("loss", "loss_path", "status"):
        if name not in hparams:
            raise SystemExit(f"error: the HParams table opens on {hparams}, without {name!r}")
    if metrics[:2] != ["final/test_accuracy", "final/test_exact_ce"]:
        raise SystemExit(f"error: the HParams metrics open on {metrics}")
    if not get_json(base + "data/plugin/custom_scalars/layout").get("category"):
        raise SystemExit("error: no custom-scalars layout")
    print(f"HParams opens on {', '.join(hparams)} | {', '.join(metrics)}")


def is_blank(png: Path) -> bool:
    """A page that did not render is one flat colour."""
    import matplotlib.image

    return float(matplotlib.image.imread(png).std()) < 0.02


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
            [sys.executable, str(ROOT / "train.py"), "-m", *SWEEP, f"hydra.sweep.dir={sweep}"],
            cwd=ROOT, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with serve(sweep) as base:
            check_views(base)
            for name, fragment in SHOTS.items():
                with tempfile.TemporaryDirectory() as profile:
                    subprocess.run(
                        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={OUT / name}",
                         base + fragment],
                        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                    )
                if is_blank(OUT / name):
                    print(f"error: {OUT / name} is blank: the page did not render", file=sys.stderr)
                    return 1
                print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
