"""Chaos: a sweep on the local SLURM cluster, hit by faults at random moments, ends as the same sweep undisturbed.

    python scripts/chaos.py                    # writes docs/chaos.json and the chaos table in docs/reliability.md
    python scripts/chaos.py --seed 7 --out /tmp/chaos    # another draw of faults; writes only into --out

It starts the one-node cluster of scripts/slurm_cluster.py (as root; or uses the one
SLURM_CONF names) and runs one sweep, `SWEEP` (two formulations, two seeds, two
backends: 8 jobs), through the `slurm_cpu` preset with `max_resubmits`, while it
injects faults, each at a moment drawn from `--seed`:

    term        `scancel --signal=TERM` (SLURM's preemption): some jobs get it in
                several of their attempts
    kill        SIGKILL of the job's training process
    node_down   the node set DOWN, then RESUMEd: SLURM ends every job running on it
                (NODE_FAIL) and requeues it
    time_limit  the job's limit cut to one minute; it was submitted with
                `--signal=USR1@WARN_S`, so SLURM warns it WARN_S seconds before

Then it runs the same sweep again, undisturbed, and compares each job's metrics.json
(every figure but the times) and history.csv, byte for byte. Every fault is
accounted for: the attempt it ended, as the job's own records say (`earlier_attempts`
in the sweep's report), or none, where it came before the run took its signals or after
the run had ended (absorbed). tests/test_chaos.py runs a short one with `moments="held"`:
each job holds in its first attempt (tests/hold.py) until its fault comes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from keras_loss_recipes.reporting.results import earlier_attempts  # noqa: E402
from keras_loss_recipes.runtime.run_files import BACKUP_DIR, HISTORY_FILE, METRICS_FILE, MOVED_ASIDE  # noqa: E402
from scripts import slurm_cluster  # noqa: E402
from tests import hold  # noqa: E402

PAGE, DATA = ROOT / "docs" / "reliability.md", ROOT / "docs" / "chaos.json"
BEGIN, END = "<!-- chaos table: scripts/chaos.py -->", "<!-- end of chaos table -->"
KINDS = ("term", "kill", "time_limit", "node_down")  # the last hits every job still running
WARN_S = 50  # --signal=USR1@WARN_S: with a one-minute limit, the warning comes 10 s after the start, or at once
# Every job: the cnn on 2,400 images (19 steps an epoch), 6 epochs, about 15 to 40 s on a loaded 2-core machine;
# SIGUSR1 (the time limit's warning) is a preemption as SIGTERM is. The same in both sweeps: only the faults differ.
JOB = ["model=cnn", "data.max_train_examples=2400", "trainer.epochs=6", "trainer.threads=1", "trainer.verbose=0",
       "trainer.preemption_signals=[SIGTERM,SIGUSR1]"]
WINDOW_S = (2.0, 15.0)  # a fault's moment: this many seconds into the attempt it hits, drawn uniformly
SWEEP = {"loss": ("softmax_ce", "from_logits"), "seed": ("0", "1"), "backend": ("tensorflow", "jax")}
# The recording launcher with a few resubmits for jobs a fault ended without a result; SLURM asked every 2 s.
LAUNCHER = ["hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=10", f"hydra.launcher.signal_delay_s={WARN_S}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.array_parallelism=4",
            "hydra.launcher.poll_interval_s=2", "hydra.launcher.result_wait_s=1", "hydra.launcher.max_resubmits=3"]
# metrics.json's keys that differ between two runs of one job: times, and whether it resumed.
VARYING = ("wall_s", "startup_s", "epoch_train_seconds", "epoch_wall_seconds", "train_samples_per_s", "resumed")
SETTLE_S = 5.0  # a job that stopped running this recently may still be in transition (requeue, exit)
HOLD_EPOCH, HOLD_STEP = 1, 2  # moments="held": the first attempt of every job holds in epoch 2, after step 2
SWEEP_TIMEOUT_S = 1800


@dataclass
class Fault:
    """One fault of the plan: `kind` on array task `job` in its attempt `attempt` (1: the first), `delay_s`
    seconds after that attempt started running (moments="random") or once it holds ("held"). A node_down
    hits every job running then; it is planned on one of them."""

    kind: str
    job: int
    attempt: int = 1
    delay_s: float = 0.0
    # Filled in when injected:
    slurm_id: str = ""
    at_s: float | None = None  # seconds since the sweep started
    into_attempt_s: float | None = None
    hit: list = field(default_factory=list)  # the array tasks running when it came (node_down: all of them)
    command_s: float | None = None  # how long its SLURM command took (scancel retries a job in transition)


def draw_plan(jobs: int, seed: int, long_jobs=(), window_s: tuple[float, float] = WINDOW_S) -> list[Fault]:
    """The faults of a chaos sweep of `jobs` jobs, drawn from `seed`: TERM in three attempts of one job, in two
    of another and in one of a third, SIGKILL of two, a time limit on one, the node down once (planned on a job
    of its own, it hits every job running), each at a random moment of its attempt. The faults of several
    attempts and the time limit (whose warning comes 10 s or more into the attempt) go to `long_jobs` first,
    which last long enough to meet them."""
    rng = random.Random(seed)
    long = [j for j in range(jobs) if j in set(long_jobs)]
    short = [j for j in range(jobs) if j not in set(long_jobs)]
    rng.shuffle(long), rng.shuffle(short)
    order = long + short
    moment = lambda: round(rng.uniform(*window_s), 1)  # noqa: E731
    plan = [Fault("term", order[0], attempt, moment()) for attempt in (1, 2, 3)]
    plan += [Fault("term", order[1], attempt, moment()) for attempt in (1, 2)]
    plan.append(Fault("time_limit", order[2 % jobs], 1, round(rng.uniform(1.0, 4.0), 1)))
    plan += [Fault("kill", order[3 % jobs], 1, moment()), Fault("term", order[4 % jobs], 1, moment()),
             Fault("kill", order[5 % jobs], 1, moment()), Fault("node_down", order[6 % jobs], 1, moment())]
    return plan


def one_of_each(jobs: int) -> list[Fault]:
    """The short chaos of the test: one fault of each kind, job k getting KINDS[k] in its first attempt."""
    return [Fault(kind, job % jobs) for job, kind in enumerate(KINDS)]


# The sweep ----------------------------------------------------------------------------------------------------


def swept(values: dict) -> list[str]:
    return [f"{key}={','.join(choices)}" for key, choices in values.items()]


def sweep_command(sweep_dir: Path, values: dict, job: list[str] = JOB) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", *LAUNCHER, *job, *swept(values),
            f"hydra.sweep.dir={sweep_dir}"]


def sweep_env(conf: Path, held: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_CONF=str(conf), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               SUBMITIT_PREEMPT_SIGNAL="USR1")  # submitit's --signal=<it>@signal_delay_s
    if held:
        env.update(hold.asked(**{hold.EPOCH_VAR: str(HOLD_EPOCH), hold.STEP_VAR: str(HOLD_STEP)}))
    return env


def job_dirs(sweep_dir: Path, values: dict) -> dict[tuple, Path]:
    """(the job's swept values, in SWEEP's order) -> its run directory, from the overrides Hydra recorded."""
    found = {}
    for overrides in Path(sweep_dir).glob("*/.hydra/overrides.yaml"):
        if MOVED_ASIDE in overrides.parent.parent.name:
            continue  # an attempt moved aside (it had no epoch to resume from): its job is beside it
        given = dict(o.split("=", 1) for o in (yaml.safe_load(overrides.read_text()) or []))
        key = tuple(given.get(name) for name in values)
        if None not in key:
            found[key] = overrides.parent.parent
    return found


def job_keys(values: dict) -> list[tuple]:
    """Every job's swept values, in the order Hydra's sweeper numbers them (the array's task indices)."""
    keys = [()]
    for choices in values.values():
        keys = [key + (choice,) for key in keys for choice in choices]
    return keys


# The cluster, seen and hit ------------------------------------------------------------------------------------


RESUBMITTED = re.compile(r"SLURM job ([\d_]+) ended .*submitted again as SLURM job (\d+)")


class Tasks:
    """The sweep's jobs as SLURM shows them: index -> (SLURM id, raw job id, state). An array task's index is in
    its id (`12_3`); a job the launcher submitted again (a new id) takes the index of the one it replaces, as
    the sweep's log (`log_files`) says."""

    def __init__(self, cluster, log_files=()):
        self.cluster = cluster
        self.log_files = list(log_files)
        self.resubmitted: dict[str, str] = {}  # new SLURM id -> the id it replaces
        self.slow: list[dict] = []  # SLURM commands that took a second or more: the injector waited for them
        self.started = time.monotonic()

    def slurm(self, *command: str) -> str:
        """Run a SLURM command; its output ("" if it ran past the cluster's minute and was stopped)."""
        began = time.monotonic()
        try:
            return self.cluster.run(*command, check=False)
        except subprocess.TimeoutExpired:
            return ""
        finally:
            if (seconds := time.monotonic() - began) >= 1.0:
                self.slow.append({"at_s": round(began - self.started, 1), "command": " ".join(command),
                                  "seconds": round(seconds, 1)})

    def now(self) -> dict[int, tuple[str, str, str]]:
        listed = self.slurm("squeue", "-h", "-r", "-o", "%i %A %T").split("\n")
        tasks = {}
        for line in listed:
            parts = line.split()
            if len(parts) == 3 and (index := self.index_of(parts[0])) is not None:
                tasks[index] = tuple(parts)
        return tasks

    def index_of(self, slurm_id: str) -> int | None:
        if re.fullmatch(r"\d+_\d+", slurm_id):
            return int(slurm_id.split("_")[1])
        if slurm_id not in self.resubmitted:
            self._read_log()
        return self.index_of(self.resubmitted[slurm_id]) if slurm_id in self.resubmitted else None

    def _read_log(self) -> None:
        for path in self.log_files:
            text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
            self.resubmitted.update({new: old for old, new in RESUBMITTED.findall(text)})

    def node(self) -> str:
        return self.slurm("sinfo", "-h", "-o", "%N").strip()


def training_pids(raw_job_id: str, conf: Path) -> list[int]:
    """The job's training processes (submitit's entry point), found by SLURM_JOB_ID and SLURM_CONF in their
    environment (another cluster on this machine numbers its jobs alike)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"submitit.core._submit" in cmdline and f"SLURM_JOB_ID={raw_job_id}".encode() in environ
                and f"SLURM_CONF={conf}".encode() in environ):
            pids.append(int(proc.name))
    return pids


def inject(fault: Fault, tasks: Tasks, task: tuple[str, str, str]) -> None:
    slurm_id, raw_id, _ = task
    fault.slurm_id = slurm_id
    if fault.kind == "term":
        tasks.slurm("scancel", "--signal=TERM", slurm_id)
    elif fault.kind == "kill":
        for pid in training_pids(raw_id, tasks.cluster.conf):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    elif fault.kind == "time_limit":
        tasks.slurm("scontrol", "update", f"JobId={slurm_id}", "TimeLimit=1")
    elif fault.kind == "node_down":
        node = tasks.node()
        tasks.slurm("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=chaos")
        time.sleep(2.0)
        tasks.slurm("scontrol", "update", f"NodeName={node}", "State=RESUME")
    else:
        raise ValueError(f"fault kind {fault.kind!r}: one of {', '.join(KINDS)}")


class Injector(threading.Thread):
    """Watches the sweep's array tasks and injects each fault of `plan` at its moment: `delay_s` into the
    attempt it names (moments="random"), or once that attempt holds ("held"). A job cut to a one-minute limit
    gets its limit back when that attempt ends, so that its next attempt runs as any other."""

    def __init__(self, cluster, plan: list[Fault], run_dir_of, moments: str, limit_min: int, log_files=()):
        super().__init__(name="chaos", daemon=True)
        self.tasks, self.plan, self.run_dir_of, self.moments = Tasks(cluster, log_files), plan, run_dir_of, moments
        self.limit_min = limit_min
        self.started = time.monotonic()
        self.attempts: dict[int, int] = {}  # array index -> attempts seen running
        self.since: dict[int, float] = {}  # array index -> when its current attempt was seen running
        self.limited: dict[int, int] = {}  # array index -> the attempt whose limit was cut
        self.left: dict[int, float] = {}  # array index -> when its last attempt was seen to stop running
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            now = self.tasks.now()
            self._follow(now)
            for fault in self.plan:
                if fault.at_s is None and self._due(fault, now):
                    fault.at_s = round(time.monotonic() - self.started, 1)
                    fault.into_attempt_s = round(time.monotonic() - self.since[fault.job], 1)
                    fault.hit = self._on_the_node(now) if fault.kind == "node_down" else [fault.job]
                    if fault.kind == "time_limit":
                        self.limited[fault.job] = fault.attempt
                    # In a thread of its own: scancel retries for up to a minute while a job is in transition
                    # (a step starting), and the other faults must not wait for it.
                    threading.Thread(target=self._inject, args=(fault, now[fault.job]), daemon=True).start()

    def _inject(self, fault: Fault, task: tuple[str, str, str]) -> None:
        began = time.monotonic()
        inject(fault, self.tasks, task)
        fault.command_s = round(time.monotonic() - began, 1)

    def _follow(self, now: dict) -> None:
        """Count each task's attempts: a new one whenever it is seen running after it was not."""
        for index, (slurm_id, _, state) in now.items():
            running = state == "RUNNING"
            if running and index not in self.since:
                self.attempts[index] = self.attempts.get(index, 0) + 1
                self.since[index] = time.monotonic()
            elif not running and index in self.since:
                del self.since[index]
                self.left[index] = time.monotonic()
                if self.limited.get(index) == self.attempts.get(index):  # the cut attempt is over
                    self.tasks.slurm("scontrol", "update", f"JobId={slurm_id}", f"TimeLimit={self.limit_min}")
                    self.limited.pop(index)
        for index in [i for i in self.since if i not in now]:
            del self.since[index]
            self.left[index] = time.monotonic()

    def _on_the_node(self, now: dict) -> list[int]:
        """The jobs a node failure hits: every one not waiting in the queue, and those that stopped running in
        the last SETTLE_S seconds (a requeue or an exit under way)."""
        recent = {i for i, when in self.left.items() if time.monotonic() - when < SETTLE_S}
        return sorted({i for i, task in now.items() if task[2] != "PENDING"} | (recent & set(now)))

    def _due(self, fault: Fault, now: dict) -> bool:
        if fault.job not in self.since or self.attempts.get(fault.job) != fault.attempt:
            return False
        if self.moments == "held":
            run_dir = self.run_dir_of(fault.job)
            return run_dir is not None and (run_dir / BACKUP_DIR / hold.NOTICE).exists() and self._turn(fault)
        return time.monotonic() - self.since[fault.job] >= fault.delay_s

    def _turn(self, fault: Fault) -> bool:
        """Held: one fault at a time, each once those before it have ended their attempts (a node failure would
        otherwise hit a job still waiting for its own fault)."""
        before = self.plan[:self.plan.index(fault)]
        return all(b.at_s is not None and (self.attempts.get(b.job, 0) > b.attempt or (
            b.job not in self.since and time.monotonic() - self.left.get(b.job, time.monotonic()) >= SETTLE_S))
            for b in before)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


# Comparing and accounting -------------------------------------------------------------------------------------


def status_of(run_dir: Path | None) -> str | None:
    """The job's metrics.json status; None where the job left no directory or no record."""
    path = None if run_dir is None else run_dir / METRICS_FILE
    return json.loads(path.read_text()).get("status") if path is not None and path.is_file() else None


def figures(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    return {k: v for k, v in metrics.items() if k not in VARYING}


def differences(chaos_dir: Path, calm_dir: Path) -> list[str]:
    """What differs between a job's two runs: metrics.json keys (the times aside), and history.csv."""
    ours, theirs = figures(chaos_dir), figures(calm_dir)
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if (chaos_dir / HISTORY_FILE).read_bytes() != (calm_dir / HISTORY_FILE).read_bytes():
        differ.append(HISTORY_FILE)
    return differ


ENDS = {  # what an attempt's record says, by the fault that ends it
    "term": ("preempted (SIGTERM)",),
    "time_limit": ("preempted (SIGUSR1)",),
    "kill": ("failed (SLURM job", "killed"),
    "node_down": ("preempted (SIGTERM)", "killed", "failed (SLURM job"),
}


SLOW_COMMAND_S = 5.0  # a scancel that took this long retried, and its later tries may hit the job's next attempt


def account(plan: list[Fault], attempts: dict[int, list[str]]) -> list[dict]:
    """Each fault: the attempt end it explains (the job's record of that attempt), or `absorbed`. A node_down is
    a fault of every job it found running. A `scancel --signal=TERM` that SLURM kept retrying (the job was in
    transition) may end the job's next attempts too: those ends go to it (`also_ended`)."""
    hits = []
    for fault in plan:
        if fault.at_s is None:
            hits.append({**asdict(fault), "job": fault.job, "ended": None, "also_ended": [],
                         "outcome": "never came (the job ended)"})
            continue
        for job in fault.hit:
            hits.append({**asdict(fault), "job": job, "ended": None, "also_ended": [], "outcome": "absorbed"})
    ends = {job: list(enumerate(said, start=1)) for job, said in attempts.items()}
    in_order = sorted((h for h in hits if h["at_s"] is not None), key=lambda h: h["at_s"])
    for hit in in_order:
        for position, (attempt, said) in enumerate(ends.get(hit["job"], [])):
            if said.startswith(ENDS[hit["kind"]]):
                hit.update(ended=attempt, outcome=said)
                ends[hit["job"]].pop(position)
                break
    for hit in in_order:  # what is left: the later tries of a slow scancel
        if hit["ended"] and hit["kind"] == "term" and (hit["command_s"] or 0) >= SLOW_COMMAND_S:
            repeated = [(n, said) for n, said in ends.get(hit["job"], []) if said.startswith(ENDS["term"])]
            hit["also_ended"] = [n for n, _ in repeated]
            ends[hit["job"]] = [end for end in ends[hit["job"]] if end not in repeated]
    return hits


def unexplained(attempts: dict[int, list[str]], hits: list[dict]) -> dict[int, list[str]]:
    """Attempt ends no fault explains (must be none)."""
    explained = {(h["job"], n) for h in hits for n in ([h["ended"]] if h["ended"] else []) + h["also_ended"]}
    return {job: [s for n, s in enumerate(said, start=1) if (job, n) not in explained]
            for job, said in attempts.items() if any((job, n) not in explained for n in range(1, len(said) + 1))}


# One chaos sweep ----------------------------------------------------------------------------------------------


def run_sweep(cluster, sweep_dir: Path, values: dict, plan: list[Fault] | None = None, moments: str = "random",
              log=print, job: list[str] = JOB) -> dict:
    """One sweep through `cluster` into `sweep_dir`; with `plan`, under its faults. Its exit code, wall time and
    output."""
    keys = job_keys(values)
    dirs: dict[tuple, Path] = {}

    def run_dir_of(index: int) -> Path | None:
        if keys[index] not in dirs:
            dirs.update(job_dirs(sweep_dir, values))
        return dirs.get(keys[index])

    started = time.monotonic()
    # Its output in files beside the sweep: the injector reads which job the launcher submitted again.
    out_file, err_file = sweep_dir.with_name(f"{sweep_dir.name}.out"), sweep_dir.with_name(f"{sweep_dir.name}.err")
    with open(out_file, "w") as out_stream, open(err_file, "w") as err_stream:
        process = subprocess.Popen(sweep_command(sweep_dir, values, job), cwd=sweep_dir.parent,
                                   env=sweep_env(cluster.conf, held=moments == "held" and bool(plan)),
                                   stdout=out_stream, stderr=err_stream, text=True)
        injector = None
        if plan:
            injector = Injector(cluster, plan, run_dir_of, moments, limit_min=10, log_files=(out_file, err_file))
            injector.start()
        try:
            process.wait(timeout=SWEEP_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
            if injector is not None:
                injector.stop()
    out, err = out_file.read_text(errors="replace"), err_file.read_text(errors="replace")
    seconds = round(time.monotonic() - started, 1)
    log(f"sweep into {sweep_dir}: exit {process.returncode} in {seconds} s")
    return {"exit": process.returncode, "seconds": seconds, "stdout": out, "stderr": err,
            "slow_slurm_calls": injector.tasks.slow if injector else []}


def chaos(cluster, work: Path, values: dict = SWEEP, plan: list[Fault] | None = None, moments: str = "random",
          seed: int = 0, log=print, job: list[str] = JOB) -> dict:
    """The chaos sweep, the same sweep undisturbed (`values` swept, `job` the overrides every job shares), and
    their comparison: the report docs/chaos.json holds."""
    keys = job_keys(values)
    if plan is None:  # the JAX jobs take about twice as long as the TensorFlow ones here
        long_jobs = [i for i, key in enumerate(keys) if dict(zip(values, key)).get("backend") == "jax"]
        plan = draw_plan(len(keys), seed, long_jobs)
    log(f"{len(keys)} jobs, {len(plan)} faults planned (moments: {moments})")
    hit = run_sweep(cluster, work / "chaos", values, plan, moments, log, job)
    calm = run_sweep(cluster, work / "undisturbed", values, None, "random", log, job)
    hit_dirs, calm_dirs = job_dirs(work / "chaos", values), job_dirs(work / "undisturbed", values)
    jobs, attempts = [], {}
    for index, key in enumerate(keys):
        run_dir, calm_dir = hit_dirs.get(key), calm_dirs.get(key)
        status, calm_status = status_of(run_dir), status_of(calm_dir)
        attempts[index] = earlier_attempts(run_dir) if run_dir else []
        differ = (differences(run_dir, calm_dir) if status == calm_status == "ok" else ["status"])
        jobs.append({"job": index, "overrides": dict(zip(values, key)), "status": status,
                     "undisturbed_status": calm_status, "attempts": len(attempts[index]) + 1,
                     "stopped_by": attempts[index], "differences": differ})
    hits = account(plan, attempts)
    return {"seed": seed, "moments": moments, "jobs": jobs, "faults": hits,
            "unexplained": {str(k): v for k, v in unexplained(attempts, hits).items()},
            "chaos_exit": hit["exit"], "undisturbed_exit": calm["exit"],
            "chaos_s": hit["seconds"], "undisturbed_s": calm["seconds"],
            "resubmitted": [new for _, new in RESUBMITTED.findall(hit["stdout"] + hit["stderr"])],
            "requeued_by_slurm": sorted(set(re.findall(r"SLURM job (\S+) was requeued by SLURM",
                                                       hit["stdout"] + hit["stderr"]))),
            "slow_slurm_calls": hit["slow_slurm_calls"], "stderr_tail": hit["stderr"][-3000:]}


# The page ----------------------------------------------------------------------------------------------------


def render(report: dict, cpu: str) -> str:
    jobs, hits = report["jobs"], report["faults"]
    identical = all(not job["differences"] for job in jobs)
    by_kind = []
    for kind in KINDS:
        of_kind = [h for h in hits if h["kind"] == kind]
        injected = len({(h["slurm_id"], h["at_s"]) for h in of_kind if h["at_s"] is not None})
        ended = sum(bool(h["ended"]) + len(h.get("also_ended", [])) for h in of_kind)
        by_kind.append(f"{kind} {injected} ({ended} attempt ends, "
                       f"{sum(1 for h in of_kind if h['outcome'] == 'absorbed')} absorbed)")
    rows = [
        "| faults injected, by kind | jobs | attempts | every job `ok` | figures identical | time lost |",
        "|---|---|---|---|---|---|",
        f"| {'; '.join(by_kind)} | {len(jobs)} | {sum(j['attempts'] for j in jobs)} | "
        f"{'yes' if all(j['status'] == 'ok' for j in jobs) else 'no'} | {'yes' if identical else 'no'} | "
        f"{report['chaos_s'] - report['undisturbed_s']:.0f} s ({report['chaos_s']:.0f} s against "
        f"{report['undisturbed_s']:.0f} s) |",
    ]
    per_job = ["| job | faults it met (seconds into the chaos sweep: the attempts each ended) | attempts | "
               "what stopped each (the sweep report's `earlier_attempts`) | differences |",
               "|---|---|---|---|---|"]
    for job in jobs:
        name = " ".join(f"{k}={v}" for k, v in job["overrides"].items())
        met = "; ".join(f"{h['kind']} at {h['at_s']:.0f} s: " + (
            ", ".join(map(str, [h["ended"], *h.get("also_ended", [])])) if h["ended"] else "absorbed")
            for h in sorted((h for h in hits if h["job"] == job["job"] and h["at_s"] is not None),
                            key=lambda h: h["at_s"]))
        per_job.append(f"| {job['job']}: {name} | {met or '-'} | {job['attempts']} | {'; '.join(job['stopped_by']) or '-'} | "
                       f"{', '.join(job['differences']) or 'none'} |")
    absorbed = [h for h in hits if h["outcome"] == "absorbed"]
    never = [h for h in hits if h["at_s"] is None]
    note = ("Absorbed (ended no attempt): " + "; ".join(
        f"{h['kind']} on job {h['job']} at {h['into_attempt_s']:.0f} s into its attempt {h['attempt']}"
        for h in absorbed) + ". A SIGTERM before the run takes its signals is logged and ignored by submitit; "
        "a fault in the last seconds of a job, once its run has ended, changes nothing; a time limit whose "
        "warning would come after the job's end never bites." if absorbed else "No fault was absorbed: each ended an attempt.")
    for h in (h for h in hits if h.get("also_ended")):
        note += (f" The TERM of job {h['job']}: SLURM retried its scancel for {h['command_s']:.0f} s (the job was in "
                 f"transition), and a later try also ended attempt(s) {', '.join(map(str, h['also_ended']))}.")
    if never:
        note += (f" Planned but never injected, their job or attempt over first: {len(never)} (" + "; ".join(
            f"{h['kind']} on job {h['job']}, attempt {h['attempt']}, at {h['delay_s']:.0f} s" for h in never) + ").")
    unexplained_ends = sum(len(v) for v in report["unexplained"].values())
    return "\n".join([
        f"`python scripts/chaos.py --seed {report['seed']}`, {cpu}: {len(jobs)} jobs "
        f"(`{' '.join(swept(SWEEP))}`, `{' '.join(JOB)}`) through the local cluster (`slurm_cpu`, "
        f"`max_resubmits=3`, `--signal=USR1@{WARN_S}`), faults at random moments, then the same sweep undisturbed. "
        f"Sweep exit codes: {report['chaos_exit']} (chaos) and {report['undisturbed_exit']} (undisturbed); "
        f"attempt ends no fault explains: {unexplained_ends}.",
        "", *rows, "", *per_job, "", note])


def write_page(report: dict, cpu: str, page: Path = PAGE) -> None:
    text = page.read_text()
    block = f"{BEGIN}\n{render(report, cpu)}\n{END}"
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        raise SystemExit(f"error: {page} has no '{BEGIN}' marker: add it where the chaos table goes")
    page.write_text(text)


def page_block(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN) + 1:text.index(END) - 1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="draws the faults' jobs and moments (default 0)")
    parser.add_argument("--out", type=Path, help="write the report here only (default: docs/chaos.json, the page)")
    parser.add_argument("--work", type=Path, help="keep both sweeps here (default: a temporary folder, removed)")
    parser.add_argument("--render", action="store_true", help="only write the page's table again from docs/chaos.json")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(DATA.read_text())
        write_page(report, report["cpu"])
        return 0
    from keras_loss_recipes.runtime.backends import cpu_name

    conf = os.environ.get("SLURM_CONF")
    with tempfile.TemporaryDirectory(prefix="recipes-chaos-") as scratch:
        work = Path(scratch) if args.work is None else args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        if conf:
            cluster = slurm_cluster.Cluster(Path(conf).parent.parent)
        else:
            try:
                cluster = slurm_cluster.start(work / "slurm")
            except slurm_cluster.ClusterUnavailable as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        try:
            report = chaos(cluster, work, seed=args.seed)
        finally:
            if not conf:
                cluster.stop()
    report["cpu"] = f"{os.cpu_count()} cores of {cpu_name()}"
    out = args.out / "chaos.json" if args.out else DATA
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if args.out is None:
        write_page(report, report["cpu"])
    print(render(report, report["cpu"]))
    ok = all(job["status"] == "ok" and not job["differences"] for job in report["jobs"])
    return 0 if ok and not report["unexplained"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
