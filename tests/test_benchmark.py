"""The benchmark runs on a tiny setting and writes well-formed JSON; the page is its rendering. No timing claims."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, needs, project_env

sys.path.insert(0, str(ROOT))
from benchmarks import hardware  # noqa: E402
from benchmarks.gpu_proxy import GOALS, SIDES  # noqa: E402
from benchmarks.performance_page import page, render  # noqa: E402
from benchmarks.plain_convnet import build_convnet  # noqa: E402


def benchmark(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), *args], cwd=ROOT,
                          env=project_env(), capture_output=True, text=True, timeout=timeout)


def test_training_flops_come_from_the_layer_shapes():
    # conv 3x3x1 -> 26x26x32, conv 3x3x32 -> 11x11x64, dense 1600 -> 10; a multiply-add is 2 FLOPs.
    forward = 2 * (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 9 * 32 + 1600 * 10)
    model = build_convnet("float32")
    assert hardware.forward_flops_per_sample(model) == forward
    assert hardware.training_flops_per_sample(model) == 3 * forward


@pytest.mark.slow(seconds=25)
def test_a_tiny_benchmark_writes_every_figure_with_its_spread_and_the_page(tmp_path):
    result = benchmark("--images", "256", "--epochs", "3", "--repeats", "1", "--precisions", "float32",
                       "--sides", "plain,framework_off", "--no-processes", "--no-backends", "--no-profile",
                       "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "performance.json").read_text())
    assert results["settings"]["images"] == 256 and results["machine"]["cores"] >= 1
    for side in ("plain", "framework_off"):
        epochs = results["fits"]["float32"][side]
        assert len(epochs["wall_s"]) == len(epochs["step_s"]) == 2  # 3 epochs, the first not counted
        assert all(wall >= step > 0 for wall, step in zip(epochs["wall_s"], epochs["step_s"]))
        spread = results["summary"]["float32"][side]["wall_samples_per_s"]
        assert spread["min"] <= spread["median"] <= spread["max"] and spread["n"] == 2
    assert results["matmul_peak_gflops"]["float32"] > 0
    goal = results["goals"][0]
    assert goal["value"] == pytest.approx(
        results["summary"]["float32"]["framework_off"]["wall_samples_per_s"]["median"]
        / results["summary"]["float32"]["plain"]["wall_samples_per_s"]["median"])
    assert (tmp_path / "performance.md").read_text() == render(results)


def test_the_performance_page_is_the_rendering_of_its_json():
    results = json.loads((ROOT / "docs" / "performance.json").read_text())
    assert (ROOT / "docs" / "performance.md").read_text() == page(ROOT / "docs" / "performance.json")
    assert results["settings"]["precisions"] == ["float32", "mixed_bfloat16", "mixed_float16"]
    # The GPU proxy's section, from docs/gpu_proxy.json: its sides and goals.
    proxy = json.loads((ROOT / "docs" / "gpu_proxy.json").read_text())
    assert "## The GPU proxy: per-step work on a CPU" in page(ROOT / "docs" / "performance.json")
    assert [g["goal"] for g in proxy["goals"]] == [g[0] for g in GOALS]


@pytest.mark.slow(seconds=40)
@needs("jax", "pip install -r requirements-jax.txt")
def test_a_tiny_gpu_proxy_writes_its_figures_goals_and_profile(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_proxy.py"), "--images", "2048",
                             "--epochs", "2", "--repeats", "2", "--steps-per-execution", "", "--out", str(tmp_path)],
                            cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    proxy = json.loads((tmp_path / "gpu_proxy.json").read_text())
    assert proxy["machine"]["backend"] == "jax" and proxy["settings"]["sides"] == list(SIDES)
    for side in SIDES:  # one timed epoch per fit, two repeats
        assert len(proxy["fits"][side]["wall_s"]) == 2 and proxy["summary"][side]["wall_samples_per_s"]["n"] == 2
    assert all(goal["value"] > 0 and isinstance(goal["held"], bool) for goal in proxy["goals"])
    assert proxy["profile"]["functions"] and proxy["profile"]["total_s"] > 0
    assert not (tmp_path / "performance.md").exists()  # no performance.json there to render with


def test_bad_benchmark_arguments_are_one_line_and_exit_2():
    result = benchmark("--precisions", "float32,float8", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [(
        "error: --precisions float8: valid choices: float32, mixed_bfloat16, mixed_float16")]


def test_the_telemetry_cost_page_is_its_json_rendered():
    """docs/telemetry_cost.md is what `python benchmarks/telemetry_cost.py` wrote from its JSON: no figure typed
    by hand, and every backend measured (the costs themselves are the benchmark's, not asserted here)."""
    from benchmarks import telemetry_cost

    result = json.loads((ROOT / "docs" / "telemetry_cost.json").read_text())
    assert (ROOT / "docs" / "telemetry_cost.md").read_text() == telemetry_cost.page(result), (
        "run: python benchmarks/telemetry_cost.py --render")
    assert {row["backend"] for row in result["monitor"]} == {"tensorflow", "jax", "torch"}
    assert {row["precision"] for row in result["recipes"]} == set(telemetry_cost.RECIPE_PRECISIONS)
