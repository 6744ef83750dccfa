"""The child-process runner (keras_loss_recipes/runtime/workers.py): results, progress, and a failed worker, the same everywhere."""
from __future__ import annotations

import sys

import pytest

from keras_loss_recipes.runtime import workers

FAILING = ("import sys; from keras_loss_recipes.runtime.workers import report; report({'step': 1}); print('halfway'); "
           "sys.stderr.write('Traceback (most recent call last):\\nValueError: boom\\n'); sys.exit(3)")


def test_results_and_progress_arrive_in_order_and_a_failed_worker_names_backend_code_and_stderr(tmp_path):
    results, lines = [], []
    worker = workers.Worker("jax", ["-c", FAILING], tmp_path / "logs" / "jax.log")
    with pytest.raises(workers.WorkerFailed) as failed:
        workers.run(worker, on_result=results.append, on_line=lines.append)
    assert results == [{"step": 1}] and lines == ["halfway"]
    assert (failed.value.backend, failed.value.code) == ("jax", 3)
    assert str(failed.value) == (f"the jax worker exited with code 3; the end of its stderr ({tmp_path}/logs/jax.log):\n"
                                 "Traceback (most recent call last):\nValueError: boom")


def test_a_worker_reports_one_result_line_that_the_parent_reads_back(capsys, tmp_path):
    workers.report({"path": "fused_logits", "run_dir": tmp_path})  # what JSON cannot hold is written as text
    printed = capsys.readouterr().out
    assert printed.startswith(workers.RESULT_PREFIX) and printed.count("\n") == 1
    assert workers.results_in("progress\n" + printed) == [{"path": "fused_logits", "run_dir": str(tmp_path)}]


def test_the_doctor_and_the_findings_report_a_failed_worker_alike(tmp_path, monkeypatch):
    """Both run their children through the one runner: a child that dies gives the same error."""
    from keras_loss_recipes.recipes import doctor
    from scripts import findings

    dying = tmp_path / "python"
    dying.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho 'MemoryError' >&2\nexit 137\n")
    dying.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(dying))
    errors = {}
    with pytest.raises(workers.WorkerFailed) as failed:
        doctor.run_workers([{"precisions": ["float32"]}], ["tensorflow"], tmp_path / "doctor")
    errors["doctor"] = failed.value
    (tmp_path / "findings").mkdir()
    with pytest.raises(workers.WorkerFailed) as failed:
        findings.run_backend("tensorflow", findings.plan("tensorflow", quick=True), tmp_path / "findings",
                             findings.Progress(1, 1.0))
    errors["findings"] = failed.value
    for name, error in errors.items():
        assert (error.backend, error.code) == ("tensorflow", 137), name
        assert str(error) == (f"the tensorflow worker exited with code 137; the end of its stderr ({error.log_file}):"
                              "\nTraceback (most recent call last):\nMemoryError"), name
