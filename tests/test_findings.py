"""The findings: the quick run asserts the qualitative claims; the committed page and README block are the JSON's rendering."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_loss_recipes.findings.page import README_BEGIN, README_END, render_page, render_readme_block
from keras_loss_recipes.runtime.workers import results_in
from tests.conftest import ROOT, needs, once_per_run, project_env

DOCS = ROOT / "docs"
HAS_JAX = importlib.util.find_spec("jax") is not None


def run_findings(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "findings.py"), *args], cwd=ROOT, env=project_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    """One quick run for the tests below (once for all workers): TensorFlow, and JAX where it is installed."""

    def run(out: Path) -> str:
        backends = "tensorflow,jax" if HAS_JAX else "tensorflow"
        result = run_findings("--quick", "--backends", backends, "--out", str(out))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout

    out, stdout = once_per_run(tmp_path_factory, "findings_quick", run)
    return out, stdout, json.loads((out / "findings.json").read_text())


@pytest.mark.slow(seconds=55)
def test_quick_run_reports_progress_and_writes_page_figures_and_tensorboard(quick):
    out, stdout, findings = quick
    progress = [line for line in stdout.splitlines() if line.startswith("[")]
    assert progress and all("ETA" in line for line in progress)
    assert (out / "findings.md").read_text() == render_page(findings)
    for name in ("findings_stress.png", "findings_probe.png"):
        assert (out / "img" / name).stat().st_size > 10_000
    from tests.test_stability import event_tags

    tags = event_tags(out / "findings").Tags()
    assert "findings/findings_stress" in tags["tensors"] + tags.get("images", [])
    env = findings["environment"]
    assert env["quick"] and env["machine"]["cores"] and env["versions"]["keras"]


@pytest.mark.slow
def test_quick_run_measures_the_claims_on_tensorflow(quick):
    claims = quick[2]["claims"]["tensorflow"]
    assert claims["softmax_ce_path"] == "rescued_softmax"  # the rescue
    assert claims["unsafe_float16_head_clips_softmax_ce"] is True  # a float16 softmax head is not rescued
    assert claims["clipped_far_above_logits_under_stress"] is True  # the clip stalls learning
    assert claims["softmax_ce_like_logits_under_stress"] is True  # the rescued softmax trains like logits
    assert claims["naive_diverges_under_stress"] is True
    assert "sparse_from_logits" in claims["always_exact"]
    assert claims["sigmoid_bce_path"] == "rescued_sigmoid"  # the sigmoid's rescue, trained on task=binary
    assert claims["sigmoid_bce_like_logits_under_stress"] is True


@pytest.mark.slow
@needs("jax", "pip install -r requirements-jax.txt")
def test_quick_run_measures_the_claims_on_jax(quick):
    claims = quick[2]["claims"]["jax"]
    assert claims["softmax_ce_path"] == "clipped_probabilities"  # no rescue off TensorFlow
    assert claims["softmax_ce_far_above_logits_under_stress"] is True  # and it trains like the clipped path
    assert "sparse_from_logits" in claims["always_exact"]


@pytest.mark.slow
def test_render_writes_the_same_page_again_without_training(quick, tmp_path):
    out = quick[0]
    result = run_findings("--render", str(out), "--docs", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "findings.md").read_text() == (out / "findings.md").read_text()


def test_a_bad_backend_is_one_line_and_exit_2():
    result = run_findings("--backends", "tensorflow,caffe", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --backends caffe: valid choices: tensorflow, jax, torch"]


def test_the_findings_page_is_the_rendering_of_its_json():
    findings = json.loads((DOCS / "findings.json").read_text())
    assert (DOCS / "findings.md").read_text() == render_page(findings)
    assert not findings["environment"]["quick"]
    for image in ("findings_stress.png", "findings_ordinary.png", "findings_precision.png", "findings_probe.png"):
        assert (DOCS / "img" / image).is_file(), image


def test_the_readme_numbers_come_from_the_findings():
    """The README's findings block (expected result, headline table) is the JSON's rendering."""
    findings = json.loads((DOCS / "findings.json").read_text())
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END) + 1
    assert readme[start:end] == render_readme_block(findings)


def test_the_published_findings_hold_the_claims_the_docs_make():
    claims = json.loads((DOCS / "findings.json").read_text())["claims"]
    assert claims["tensorflow"]["softmax_ce_exact"] is True
    for backend in set(claims) - {"tensorflow"}:
        assert claims[backend]["softmax_ce_exact"] is False, backend
    for backend, measured in claims.items():
        assert measured["clipped_far_above_logits_under_stress"] is True, backend
        assert measured["naive_diverges_under_stress"] is True, backend
        assert measured["sound_formulations_agree_without_stress"] is True, backend


def test_a_failing_job_is_recorded_and_the_worker_goes_on(tmp_path):
    plan = [{"kind": "train", "group": "stress", "name": "bad", "loss": "naive", "seed": 0, "precision": "float32",
             "unsafe_head": False, "overrides": ["trainer.epochs=-1"]}] * 2
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    result = run_findings("--worker", "tensorflow", "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path),
                          timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = results_in(result.stdout)
    assert [r["status"] for r in reports] == ["failed", "failed"]
    assert "trainer.epochs=-1" in reports[0]["error"]
