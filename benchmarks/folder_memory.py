"""Peak memory of training on a folder of images: it must not grow with the folder.

    python benchmarks/folder_memory.py            # writes docs/folder_memory.json and its table in docs/your_model.md
    python benchmarks/folder_memory.py --render   # the table again from docs/folder_memory.json, no training

Writes the 5,000 embedded MNIST digits as PNG files into a folder, and 12 copies
of them (60,000 files) into another, then trains one epoch of the mlp on each
(`data=folder`), and, for comparison, on the same 60,000 images held in memory
(`data=npz`). Each run is its own process; its peak resident memory is the
kernel's figure for it (`ru_maxrss` of the finished child).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE, DATA = ROOT / "docs" / "your_model.md", ROOT / "docs" / "folder_memory.json"
BEGIN, END = "<!-- folder memory: benchmarks/folder_memory.py -->", "<!-- end of folder memory -->"
RUN = ["model=mlp", "trainer.epochs=1", "trainer.verbose=0", "data.val_examples=500", "data.test_examples=500"]
# Run as its own process, so that its peak is the training run's alone.
MEASURE = ("import resource, subprocess, sys; "
           "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
           "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_folder(root: Path, copies: int) -> int:
    from PIL import Image

    from keras_loss_recipes.data.embedded import read_embedded

    images, labels = read_embedded()
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    count = 0
    for copy in range(copies):
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(root / str(label) / f"{copy:02d}_{i:04d}.png")
            count += 1
    return count


def peak_rss_mb(overrides: list[str], run_dir: Path) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(ROOT / "train.py"), *RUN, *overrides, f"hydra.run.dir={run_dir}"]
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"the run {' '.join(overrides)} failed; see {run_dir}/train.log")
    return round(int(out[1]) / 1024, 1)  # kilobytes on Linux


def measure() -> dict:
    from keras_loss_recipes.runtime.backends import cpu_name

    figures = {}
    with tempfile.TemporaryDirectory(prefix="folder-memory-") as scratch:
        scratch = Path(scratch)
        for name, copies in (("folder_5k", 1), ("folder_60k", 12)):
            count = write_folder(scratch / name, copies)
            print(f"{name}: {count} PNG files; training ...", file=sys.stderr, flush=True)
            figures[name] = {"images": count, "peak_rss_mb": peak_rss_mb(
                ["data=folder", f"data.dir={scratch / name}"], scratch / f"run_{name}")}
        from keras_loss_recipes.data.embedded import read_embedded

        images, labels = read_embedded()
        np.savez(scratch / "all.npz", x_train=np.concatenate([images] * 12), y_train=np.concatenate([labels] * 12))
        print("npz_60k: training ...", file=sys.stderr, flush=True)
        figures["npz_60k"] = {"images": 12 * len(labels), "peak_rss_mb": peak_rss_mb(
            ["data=npz", f"data.path={scratch / 'all.npz'}"], scratch / "run_npz")}
    return {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(), "run": RUN, "figures": figures}


def render(result: dict) -> str:
    f = result["figures"]
    rows = [("a folder of 5,000 PNG files (`data=folder`)", f["folder_5k"]),
            ("a folder of 60,000 PNG files (`data=folder`)", f["folder_60k"]),
            ("the same 60,000 images as arrays (`data=npz`, in memory)", f["npz_60k"])]
    lines = [BEGIN, "", f"Peak resident memory of one training process (`python train.py {' '.join(result['run'])}`), "
             f"{result['machine']}, {result['date']}, by `python benchmarks/folder_memory.py`:", "",
             "| data | images | peak RSS (MB) |", "|---|---|---|"]
    lines += [f"| {label} | {row['images']:,} | {row['peak_rss_mb']:.0f} |" for label, row in rows]
    return "\n".join([*lines, "", END])


def page_block(page: str) -> str:
    """The table's block of `page` (docs/your_model.md), its markers included: what render() writes."""
    return BEGIN + page.split(BEGIN, 1)[1].split(END, 1)[0] + END


def main(argv: list[str]) -> None:
    if argv != ["--render"]:
        DATA.write_text(json.dumps(measure(), indent=2) + "\n")
        print(f"wrote {DATA}", file=sys.stderr)
    result = json.loads(DATA.read_text())
    page = PAGE.read_text()
    PAGE.write_text(page.replace(page_block(page), render(result)))
    print(f"wrote the figures of {DATA.name} into {PAGE}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
