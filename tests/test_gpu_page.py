"""docs/gpu.md is the rendering of docs/gpu.json, the summary that scripts/gpu_run.sh wrote on the GPU."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_page import render  # noqa: E402


def test_the_gpu_page_is_the_rendering_of_its_json():
    summary = json.loads((ROOT / "docs" / "gpu.json").read_text())
    assert (ROOT / "docs" / "gpu.md").read_text() == render(summary)


def test_the_page_has_every_backend_s_loss_paths_and_benchmark():
    summary = json.loads((ROOT / "docs" / "gpu.json").read_text())
    page = render(summary)
    for backend, info in summary["backends"].items():
        for batch in info["benchmark"] or {}:
            assert f"### {backend}, batch {batch}" in page
        for policy in info["loss_paths"]:
            assert f"{backend}, {policy}" in page
    assert "fused_logits" in page and "clipped_probabilities" in page


def test_a_missing_summary_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_page.py"), str(tmp_path / "nope.json")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope.json" in done.stderr
