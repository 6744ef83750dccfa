"""Chaos (scripts/chaos.py): a short sweep on the local SLURM cluster, one fault of each kind, ends as the same
sweep undisturbed; and docs/reliability.md's chaos table is the script's.

The full table (8 jobs, faults at random moments) comes from `python scripts/chaos.py`, not from the suite.
Here each job holds in its second epoch (tests/hold.py) until its fault comes, so that every fault lands
in training on a machine of any speed, one after another.
"""
from __future__ import annotations

import csv
import json

import pytest

from scripts import chaos
from tests.conftest import needs

# Four jobs on TensorFlow; the faults' kinds in the order they come (the node failure last: it hits every job
# still running, and by then each has had its own).
VALUES = {"loss": ("softmax_ce", "from_logits"), "seed": ("0", "1"), "backend": ("tensorflow",)}
# Smaller jobs than the script's: the mlp on 600 images (5 steps an epoch), 4 epochs. The holds place the faults.
JOB = ["model=mlp", "data.max_train_examples=600", "trainer.epochs=4", *chaos.JOB[3:]]
STOPPED = f"at epoch {chaos.HOLD_EPOCH + 1} step {chaos.HOLD_STEP} of 5"
EXPECTED_END = {"term": f"preempted (SIGTERM) {STOPPED}", "time_limit": f"preempted (SIGUSR1) {STOPPED}",
                "kill": "failed (SLURM job ", "node_down": f"preempted (SIGTERM) {STOPPED}"}


@needs("submitit", "pip install -r requirements-sweeps.txt")
@pytest.mark.slow(seconds=150)
def test_a_sweep_hit_by_each_kind_of_fault_ends_as_the_undisturbed_sweep(slurm_cluster, tmp_path):
    plan = chaos.one_of_each(len(chaos.job_keys(VALUES)))
    assert [fault.kind for fault in plan] == list(chaos.KINDS)
    report = chaos.chaos(slurm_cluster, tmp_path, VALUES, plan, moments="held", log=lambda line: None,
                         job=JOB)
    tail = report["stderr_tail"]

    # Both sweeps ended well, every job ok, and every figure and history.csv equal to the undisturbed job's.
    assert (report["chaos_exit"], report["undisturbed_exit"]) == (0, 0), tail
    assert [job["status"] for job in report["jobs"]] == ["ok"] * 4, report["jobs"]
    assert [job["differences"] for job in report["jobs"]] == [[]] * 4, report["jobs"]

    # Each fault came and ended the attempt it was aimed at, and the job's records say how. The node failure
    # may also hit jobs in their next attempt (whatever runs then); no attempt ended without a fault.
    for hit in report["faults"]:
        aimed = hit["job"] == next(f.job for f in plan if f.kind == hit["kind"])
        assert hit["at_s"] is not None, hit
        if aimed:
            assert hit["ended"] == 1 and hit["outcome"].startswith(EXPECTED_END[hit["kind"]]), hit
    assert report["unexplained"] == {}
    assert all(job["attempts"] >= 2 for job in report["jobs"]), report["jobs"]
    killed = next(hit for hit in report["faults"] if hit["kind"] == "kill")
    assert report["resubmitted"] and killed["outcome"] == f"failed (SLURM job {killed['slurm_id']} ended FAILED)"

    # The sweep's own report accounts for the attempts.
    with open(tmp_path / "chaos" / "comparison.csv", newline="") as table:
        rows = {row["run"]: row for row in csv.DictReader(table)}
    assert sorted(int(row["attempts"]) for row in rows.values()) == sorted(job["attempts"] for job in report["jobs"])
    assert sorted(row["earlier_attempts"] for row in rows.values()) == sorted(
        "; ".join(job["stopped_by"]) for job in report["jobs"])


def test_the_plan_is_drawn_from_the_seed_and_holds_every_kind():
    first, again, other = chaos.draw_plan(8, 0), chaos.draw_plan(8, 0), chaos.draw_plan(8, 1)
    assert first == again and first != other
    assert {fault.kind for fault in first} == set(chaos.KINDS)
    terms = [fault.job for fault in first if fault.kind == "term"]
    assert max(terms.count(job) for job in terms) > 1  # some job is preempted in several of its attempts


def test_the_page_shows_the_scripts_last_chaos_run():
    report = json.loads(chaos.DATA.read_text())
    assert chaos.page_block(chaos.PAGE.read_text()) == chaos.render(report, report["cpu"]), (
        "run: python scripts/chaos.py")
    assert all(job["status"] == "ok" and not job["differences"] for job in report["jobs"])
    assert report["unexplained"] == {}
    assert {hit["kind"] for hit in report["faults"]} == set(chaos.KINDS)
