"""Inject each fault of docs/reliability.md's table into a real run; record what followed.

Each row: what the run did, whether the resumed run ended with the figures of the run trained straight
through, and the time the fault cost.

    python scripts/faults.py          # writes docs/faults.json and the table in docs/reliability.md
    python scripts/faults.py --only "process 1 of 2"   # only the rows whose name holds this; the others kept

tests/test_faults.py injects the same faults with these functions and asserts every row. Each run is
`python train.py` (the mlp, 500 images, 3 epochs) in a child process, held after an epoch (RECIPES_HOLD_*,
tests/hold.py) so that each fault comes at a known point on any machine. The full disk and the
read-only directory are small tmpfs mounts: they need root (`Unavailable` says why not).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_loss_recipes.runtime.run_files import BACKUP_DIR, LOCK_FILE, METRICS_FILE  # noqa: E402
from scripts.multiprocess_figures import KILL_JOB, launch_command, process_of  # noqa: E402
from tests import hold  # noqa: E402

PAGE, DATA = ROOT / "docs" / "reliability.md", ROOT / "docs" / "faults.json"
BEGIN, END = "<!-- fault table: scripts/faults.py -->", "<!-- end of fault table -->"
RUN = ["model=mlp", "data.max_train_examples=500", "trainer.epochs=3", "trainer.verbose=0"]
COMPARED = ("val_accuracy", "val_exact_ce", "test_accuracy", "test_loss", "test_exact_ce", "epochs_completed",
            "history")
HOLD_S = 300  # a held run waits at most this long for its fault
STEP = 2  # a preemption in the middle of an epoch comes after this step of epoch 2 (of 4: 500 images, batch 128)
GRACE_S = 2  # trainer.preemption_grace_s of the run whose step outlasts it
# Two JAX processes (scripts/launch_processes.py) on tests/test_multiprocess.py's job: 1,024 images, 6 epochs of
# 16 steps. Both held after step STEP of epoch 2, they stop after the next step (the one they agree on).
GROUP_RUN = KILL_JOB
GROUP_STOP = f"epoch 2 step {STEP + 1} of 16"  # 1,024 images in global batches of 64
GROUP = f"SIGTERM to process 1 of 2 (JAX, scripts/launch_processes.py) in epoch 2, after step {STEP}"


class Unavailable(Exception):
    """The fault cannot be injected here (a mount needs root)."""


def env(**extra) -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), **extra)


def command(run_dir: Path, *extra) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"]


def train(run_dir: Path, *extra, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    """`python train.py RUN extra hydra.run.dir=run_dir`, and its wall time in seconds."""
    started = time.monotonic()
    done = subprocess.run(command(run_dir, *extra), cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    return done, time.monotonic() - started


@contextlib.contextmanager
def held_run(run_dir: Path, *extra, after: int = 1, step: int | None = None, through_signal: bool = False):
    """A run held after epoch `after` (or after step `step` of the next epoch; `through_signal`: a preemption
    signal does not end the hold): yields (process, seconds it took to get there, the hold's notice file);
    killed on the way out if it is still there."""
    started = time.monotonic()
    asked = hold.asked(**{hold.EPOCH_VAR: str(after), hold.SECONDS_VAR: str(HOLD_S),
                          **({hold.STEP_VAR: str(step)} if step else {}), **({hold.THROUGH_VAR: "1"} if through_signal else {})})
    process = subprocess.Popen(command(run_dir, *extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env(**asked), preexec_fn=hold.ctrl_c_restored)
    notice = run_dir / BACKUP_DIR / hold.NOTICE
    try:
        if not hold.wait_until_held(process, notice, timeout=HOLD_S):
            raise RuntimeError(f"the run ended before it held (exit {process.returncode}):\n"
                               f"{process.communicate()[1][-3000:]}")
        yield process, time.monotonic() - started, notice
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@contextlib.contextmanager
def tmpfs(options: str):
    """A fresh tmpfs mounted with `options`, unmounted afterwards."""
    with tempfile.TemporaryDirectory(prefix="fault-") as scratch:
        target = Path(scratch) / "mnt"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True,
                              text=True)
        if done.returncode:
            raise Unavailable(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
        try:
            yield target
        finally:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def contents(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run directory but the lock, Hydra's log and the hold's notice."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in (LOCK_FILE, "train.log", hold.NOTICE)}


def figures(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    return {key: metrics.get(key) for key in COMPARED}


def said(stderr: str, *marks: str) -> list[str]:
    """The lines of `stderr` a user reads as the run's account of the fault (and any traceback)."""
    return [line for line in stderr.splitlines()
            if line.startswith("error:") or "Traceback" in line or any(mark in line for mark in marks)]


def intact(before: dict[str, bytes], after: dict[str, bytes]) -> bool:
    """Each earlier file is as it was, or (an append-only file: the event files) begins as it did."""
    return all(name in after and after[name].startswith(data) for name, data in before.items())


def resume(row: dict, run_dir: Path, straight: dict, *extra) -> dict:
    """Run the same command again; the row gets whether it ended as the straight run, and its time."""
    done, seconds = train(run_dir, *extra)
    row.update(resume_exit=done.returncode, resumed_equal=done.returncode == 0 and figures(run_dir) == straight,
               resume_s=round(seconds, 1), resume_said=said(done.stdout + done.stderr, "is damaged"))
    return row


# The faults: each returns its row -------------------------------------------------------------------------------

def kill(work: Path, straight: dict) -> dict:
    """SIGKILL after epoch 1: no handler can run (a lost node, the OOM killer)."""
    run_dir = work / "run"
    with held_run(run_dir) as (process, reached, _):
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
    row = {"exit": process.returncode, "said": said(stderr), "status": _status(run_dir), "attempt_s": reached}
    return resume(row, run_dir, straight)


def preemption(work: Path, straight: dict, signal_name: str = "SIGTERM", backend: str | None = None) -> dict:
    """A preemption signal in epoch 2, after its step `STEP` (SIGTERM; SIGUSR1 where trainer.preemption_signals
    lists it), on `backend` (TensorFlow when None: `straight` is its run; another backend's straight run is
    trained here)."""
    run_dir = work / "run"
    taken = [] if signal_name == "SIGTERM" else [f"trainer.preemption_signals=[SIGTERM,{signal_name}]"]
    taken += [f"backend={backend}"] if backend else []
    straight_s = None
    if backend:
        straight, straight_s = straight_figures(work / "straight", *taken)
    with held_run(run_dir, *taken, step=STEP) as (process, reached, _):
        process.send_signal(getattr(signal, signal_name))
        _, stderr = process.communicate(timeout=120)
    record = _record(run_dir)
    row = {"exit": process.returncode, "said": said(stderr, "preempted"), "status": record.get("status"),
           "stopped_at": record.get("stopped_at"), "stop_s": record.get("stop_s"), "attempt_s": reached,
           "backups": _backups(run_dir),
           **({"straight_s": round(straight_s, 1)} if straight_s else {})}
    return resume(row, run_dir, straight, *taken)


def grace_passed(work: Path, straight: dict) -> dict:
    """SIGTERM in epoch 2 after its step `STEP`, whose step and backup outlast trainer.preemption_grace_s (the
    hold goes on through the signal, as a step too long for the grace time would)."""
    run_dir = work / "run"
    grace = [f"trainer.preemption_grace_s={GRACE_S}"]
    with held_run(run_dir, *grace, step=STEP, through_signal=True) as (process, reached, _):
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        ended = time.monotonic() - sent
    row = {"exit": process.returncode, "said": said(stderr, "preempted"), "status": _status(run_dir),
           "attempt_s": reached + ended, "ended_after_s": round(ended, 2),
           "backups": _backups(run_dir)}
    return resume(row, run_dir, straight, *grace)


def ctrl_c(work: Path, straight: dict) -> dict:
    """Ctrl-C (SIGINT) after epoch 1."""
    run_dir = work / "run"
    with held_run(run_dir) as (process, reached, _):
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    row = {"exit": process.returncode, "said": said(stderr, "interrupted"), "status": _status(run_dir),
           "attempt_s": reached}
    return resume(row, run_dir, straight)


def damaged_backup(work: Path, straight: dict) -> dict:
    """SIGKILL after epoch 2, then one byte of the newest backup flipped (its size unchanged)."""
    run_dir = work / "run"
    with held_run(run_dir, after=2) as (process, reached, _):
        process.send_signal(signal.SIGKILL)
        process.communicate()
    state = run_dir / BACKUP_DIR / "epoch-000002" / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    row = {"exit": process.returncode, "said": [], "status": _status(run_dir), "attempt_s": reached}
    return resume(row, run_dir, straight)


def full_disk(work: Path, straight: dict) -> dict:
    """The run's file system (an 8 MiB tmpfs) filled to its last byte after epoch 1."""
    with tmpfs("size=8m") as disk:
        run_dir = disk / "run"
        with held_run(run_dir) as (process, reached, notice):
            before = contents(run_dir)
            ballast = disk / "ballast"
            with ballast.open("wb") as handle:
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
            notice.unlink()  # go on: epoch 2 finds no room
            _, stderr = process.communicate(timeout=240)
        after = contents(run_dir)
        row = {"exit": process.returncode, "said": said(stderr), "status": _status(run_dir), "attempt_s": reached,
               "intact": intact(before, after), "backup_kept": all(
                   after.get(name) == data for name, data in before.items() if name.startswith(BACKUP_DIR + "/"))}
        ballast.unlink()
        return resume(row, run_dir, straight)


def second_writer(work: Path, straight: dict) -> dict:
    """A second `python train.py` on the run directory of a live run (held after epoch 1); then the first is
    killed (SIGKILL, as `kill`: how it ended is in the row too), and the same command resumes past its lock."""
    run_dir = work / "run"
    with held_run(run_dir) as (process, reached, _):
        before = contents(run_dir)
        second, _ = train(run_dir)
        row = {"exit": second.returncode, "said": said(second.stderr), "holder": process.pid,
               "intact": contents(run_dir) == before, "attempt_s": reached}
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
    row.update(killed_exit=process.returncode, killed_said=said(stderr), killed_status=_status(run_dir))
    return resume(row, run_dir, straight)


def read_only(work: Path, straight: dict) -> dict:
    """A run directory on a read-only file system."""
    with tmpfs("ro,size=1m") as disk:
        done, seconds = train(disk / "run")
        # The default run directory, runs/ under the working directory, the same way.
        default = subprocess.run([sys.executable, str(ROOT / "train.py"), *RUN], cwd=disk, env=env(),
                                 capture_output=True, text=True, timeout=600)
        return {"exit": done.returncode, "said": said(done.stderr), "attempt_s": round(seconds, 1),
                "dir": str(disk), "written": any(disk.iterdir()),
                "default_exit": default.returncode, "default_said": said(default.stderr)}


def launched(run_dir: Path) -> list[str]:
    """scripts/launch_processes.py's command for GROUP_RUN in `run_dir` (two JAX processes)."""
    return launch_command(*GROUP_RUN, f"hydra.run.dir={run_dir}")


def straight_group_run(run_dir: Path, cwd: Path) -> float:
    """GROUP_RUN trained straight through by two processes in `run_dir`; its wall time in seconds."""
    started = time.monotonic()
    done = subprocess.run(launched(run_dir), cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=600)
    if done.returncode:
        raise RuntimeError(f"the straight two-process run failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def same_run(run_dir: Path, straight_dir: Path) -> bool:
    """Whether `run_dir` ended with the figures and history.csv, bit for bit, of `straight_dir`."""
    from keras_loss_recipes.runtime.run_files import HISTORY_FILE

    return (figures(run_dir) == figures(straight_dir)
            and (run_dir / HISTORY_FILE).read_bytes() == (straight_dir / HISTORY_FILE).read_bytes())


def group_preemption(work: Path, straight: dict | None = None, straight_dir: Path | None = None,
                     rank: int = 1) -> dict:
    """SIGTERM to process `rank` of two (JAX, scripts/launch_processes.py) in epoch 2, both held after its step
    `STEP`: every process stops after the step they agree on (the next one: `GROUP_STOP`), saves it, exits
    143; the launcher too; then the same command resumes. `straight_dir`: GROUP_RUN trained straight through
    by two processes, to compare with (trained here when None). `straight` (the one-process run's) is unused."""
    straight_s = None
    if straight_dir is None:
        straight_dir = work / "straight"
        straight_s = straight_group_run(straight_dir, work)
    run_dir = work / "run"
    scratch = work / "tmp"  # the launcher's TMPDIR: process 1's scratch run directory, and its hold's notice
    scratch.mkdir(parents=True, exist_ok=True)
    asked = hold.asked(**{hold.EPOCH_VAR: "1", hold.STEP_VAR: str(STEP), hold.SECONDS_VAR: str(HOLD_S)})
    started = time.monotonic()
    launcher = subprocess.Popen(launched(run_dir), cwd=work, env=env(TMPDIR=str(scratch), **asked),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if not hold.wait_until_held(launcher, run_dir / BACKUP_DIR / hold.NOTICE, timeout=HOLD_S):
            raise RuntimeError(f"the run ended before it held:\n{launcher.communicate()[0][-3000:]}")
        reached = time.monotonic() - started
        process_of(launcher, rank).send_signal(signal.SIGTERM)
        out, err = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    record = _record(run_dir)
    saved = dict(re.findall(r"^\[p(\d+)\] .* - saved (epoch \d+ step \d+ of \d+) ", out, re.MULTILINE))
    row = {"exit": launcher.returncode, "status": record.get("status"), "stopped_at": record.get("stopped_at"),
           "saved_by": {int(rank_): point for rank_, point in saved.items()}, "attempt_s": reached,
           "said": [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[p0] preempted (")]
           + [line for line in err.splitlines() if line.startswith("launch:")],
           "backups": _backups(run_dir), "date": time.strftime("%Y-%m-%d"),
           **({"straight_s": round(straight_s, 1)} if straight_s else {})}
    started = time.monotonic()
    again = subprocess.run(launched(run_dir), cwd=work, env=env(), capture_output=True, text=True,
                           timeout=600)
    row.update(resume_exit=again.returncode, resume_s=round(time.monotonic() - started, 1),
               resumed_equal=again.returncode == 0 and same_run(run_dir, straight_dir),
               resume_said=[], resumed_at=re.findall(r"^\[p(\d+)\] .* - resumed at (epoch \d+ step \d+) ",
                                                    again.stdout, re.MULTILINE))
    return row


def _record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}  # nothing recorded


def _backups(run_dir: Path) -> list[str]:
    """The backup folders a stopped run left, oldest first."""
    return sorted(p.name for p in (run_dir / BACKUP_DIR).glob("epoch-*"))


def _status(run_dir: Path):
    return _record(run_dir).get("status")


FAULTS = {
    "SIGKILL after epoch 1": kill,
    f"SIGTERM in epoch 2, after step {STEP} (preemption)": preemption,
    f"SIGTERM in epoch 2, after step {STEP}, on JAX": lambda work, straight: preemption(work, straight, backend="jax"),
    f"SIGUSR1 in epoch 2, after step {STEP}, on PyTorch (trainer.preemption_signals)":
        lambda work, straight: preemption(work, straight, "SIGUSR1", backend="torch"),
    f"SIGTERM in epoch 2, its step outlasting trainer.preemption_grace_s={GRACE_S}": grace_passed,
    GROUP: group_preemption,
    "Ctrl-C after epoch 1": ctrl_c,
    "newest backup damaged (SIGKILL after epoch 2, one byte flipped)": damaged_backup,
    "disk full in epoch 2": full_disk,
    "a second process on a live run's directory": second_writer,
    "read-only runs directory": read_only,
}


def straight_figures(work: Path, *extra) -> tuple[dict, float]:
    done, seconds = train(work / "straight", *extra)
    if done.returncode:
        raise RuntimeError(f"the straight run failed:\n{done.stderr[-3000:]}")
    return figures(work / "straight"), seconds


_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\[[^\]]*\]\[\w+\] - ")
_SCRATCH = re.compile(r"/tmp/faults?-[A-Za-z0-9_]+/(?:\d+/run|mnt/run|mnt)")


def plain(line: str) -> str:
    """A line as the table shows it: no log prefix, the scratch directories as <run dir> and <mount>."""
    line = _LOG_PREFIX.sub("", line)
    return _SCRATCH.sub(lambda m: "<mount>" if m[0].endswith("mnt") else "<run dir>", line)


def render(data: dict) -> str:
    env_ = data["environment"]
    lines = [BEGIN, f"`python scripts/faults.py`, {env_['cores']} cores of {env_['cpu']}, {env_['date']}: "
             f"`python train.py {' '.join(RUN)}`, trained straight through in {env_['straight_s']:.1f} s, and "
             "again with each fault (the JAX and PyTorch rows: against the same run straight through on their "
             "backend; the two processes' row: `python scripts/launch_processes.py --processes 2 -- "
             f"{' '.join(GROUP_RUN)}`, against the same two processes straight through). *Lost*: the time the "
             "attempt and its resume took beyond the straight run (process start-ups included).", "",
             "| fault | what the run did | exit | resumed run = straight run | lost |", "|---|---|---|---|---|"]
    for name, row in data["rows"].items():
        if "unavailable" in row:
            lines.append(f"| {name} | not run here: {row['unavailable']} | | | |")
            continue
        told = "; ".join(f"`{plain(line)}`" for line in row["said"] + row.get("resume_said", [])) or "nothing (killed)"
        equal = "-" if "resumed_equal" not in row else ("yes" if row["resumed_equal"] else "**no**")
        straight_s = row.get("straight_s", env_["straight_s"])  # another backend's row: its own straight run
        lost = (row["attempt_s"] + row["resume_s"] - straight_s) if "resume_s" in row else row["attempt_s"]
        status = f" status `{row['status']}`;" if row.get("status") else ""
        when = f" (measured {row['date']})" if row.get("date", env_["date"]) != env_["date"] else ""
        lines.append(f"| {name}{when} |{status} {told} | {row['exit']} | {equal} | {lost:.1f} s |")
    lines.append(END)
    return "\n".join(lines)


OWN_STRAIGHT = {GROUP}  # rows compared with a straight run of their own, not the one-process run's


def main(argv: list[str]) -> None:
    """Every row; with `--only TEXT`, the rows whose name holds TEXT, the others kept from docs/faults.json (a
    row of its own straight run, such as the group's, then needs no other run)."""
    from keras_loss_recipes.runtime.backends import cpu_name

    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    chosen = [name for name in FAULTS if only is None or only in name]
    if not chosen:
        raise SystemExit(f"error: --only {only!r}: no fault's name holds it; the faults: {', '.join(FAULTS)}")
    earlier = json.loads(DATA.read_text()) if only is not None else None
    rows = dict(earlier["rows"]) if earlier else {}
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        work = Path(scratch)
        straight, straight_s = None, None
        if any(name not in OWN_STRAIGHT for name in chosen):
            straight, straight_s = straight_figures(work)
        for index, (name, inject) in enumerate(FAULTS.items()):
            if name not in chosen:
                continue
            print(f"[{index + 1}/{len(FAULTS)}] {name}", file=sys.stderr, flush=True)
            (work / str(index)).mkdir()
            try:
                rows[name] = inject(work / str(index), straight)
            except Unavailable as why:
                rows[name] = {"unavailable": str(why)}
    environment = dict(earlier["environment"]) if earlier else {}
    if straight_s is not None or not earlier:
        environment = {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                       "straight_s": round(straight_s, 1), "command": "python scripts/faults.py"}
    data = {"environment": environment, "rows": {name: rows[name] for name in FAULTS if name in rows}}
    DATA.write_text(json.dumps(data, indent=1) + "\n")
    page = PAGE.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{PAGE}: the markers {BEGIN} ... {END} are missing")
    before, rest = page.split(BEGIN, 1)
    PAGE.write_text(before + render(data) + rest.split(END, 1)[1])
    print(f"wrote {DATA.relative_to(ROOT)} and the table of {PAGE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
