"""Train one model with several local processes (JAX, trainer.distribution=data_parallel).

    python scripts/launch_processes.py --processes 2 -- backend=jax trainer.distribution=data_parallel model=mlp

Starts N `python train.py OVERRIDES` processes that meet at a coordinator on
127.0.0.1 (a free port) and bind every listener to loopback; process 0 writes
the run directory (hydra.run.dir, or the usual default), the others a scratch
one. Their output comes through prefixed with [pN]. trainer.batch_size is the
global batch: each process feeds batch_size / N examples of every step.

When a process fails or is killed, the others stop on their own (a broken
collective, or trainer.stall_timeout_s without progress); whatever is still
running after a short grace is ended. The launcher then prints one line naming
the process and how it ended, makes sure the run directory records the run as
failed, and exits non-zero. Running the same command (with the same
hydra.run.dir) resumes it. Ctrl-C stops every process. A preemption signal to
any process stops every one after the same step (the run records "preempted");
SIGTERM to the launcher is passed on to every process as that preemption, and
the launcher exits with the processes' code (143).
See docs/scale.md ("Several processes, one model").
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_loss_recipes.runtime import processes  # noqa: E402

MAX_PROCESSES = 64
GRACE_S = 15  # how long the others get to stop on their own (and record the failure) after one failed
TERM_S = 5  # then SIGTERM; after this, SIGKILL


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind((processes.LOOPBACK, 0))
        return probe.getsockname()[1]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [--processes N] -- [train.py overrides ...]")
    parser.add_argument("--processes", default="2", help="how many processes (default 2)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides, after --")
    args = parser.parse_args(argv)
    if not args.processes.isdigit() or not 1 <= int(args.processes) <= MAX_PROCESSES:
        raise SystemExit(_error(f"--processes={args.processes}: a whole number from 1 to {MAX_PROCESSES}"))
    args.processes = int(args.processes)
    if any(arg in ("-m", "--multirun") for arg in args.overrides):
        raise SystemExit(_error("-m: several processes train one model; a sweep (-m) is not launched this way"))
    return args


class Terminated(Exception):
    """The launcher got a second SIGTERM while its processes were stopping: they are stopped at once."""


def _passed_on(children: list[subprocess.Popen]):
    """The launcher's SIGTERM handler: the first is a preemption (a batch system ending it), passed on to every
    process, which stop after the same step; a second stops them at once."""
    def handler(signum, frame):
        if getattr(handler, "sent", False):
            raise Terminated()
        handler.sent = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)
        print("launch: SIGTERM passed on to every process: they stop after the same step", file=sys.stderr,
              flush=True)
    return handler


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def _forward(rank: int, stream) -> None:
    for line in stream:
        sys.stdout.write(f"[p{rank}] {line}")
        sys.stdout.flush()


def start(count: int, overrides: list[str], scratch: Path) -> list[subprocess.Popen]:
    coordinator = f"{processes.LOOPBACK}:{free_loopback_port()}"
    children = []
    for rank in range(count):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{
            processes.COUNT_VAR: str(count), processes.RANK_VAR: str(rank),
            processes.COORDINATOR_VAR: coordinator, processes.RUN_DIR_FILE_VAR: str(scratch / "run_dir"),
            processes.SCRATCH_VAR: str(scratch)})
        for name in [n for n in env if n.startswith("SLURM_")]:
            del env[name]  # a local launch inside a SLURM allocation is still a local launch
        child = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=_forward, args=(rank, child.stdout), daemon=True).start()
        children.append(child)
    return children


def how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def watch(children: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for every child; (rank, code) of the first that failed, or None."""
    first = None
    while True:
        codes = [child.poll() for child in children]
        if first is None:
            # A process killed by a signal first: the others' errors follow from it.
            failed = sorted(((rank, code) for rank, code in enumerate(codes) if code not in (None, 0)),
                            key=lambda failure: failure[1] > 0)
            if failed:
                first, since = failed[0], time.monotonic()
        if all(code is not None for code in codes):
            return first
        if first is not None and time.monotonic() - since > GRACE_S:
            stop(children)
        time.sleep(0.1)


def wait_for(children: list[subprocess.Popen], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(child.poll() is None for child in children):
        time.sleep(0.1)


def interrupt(children: list[subprocess.Popen]) -> None:
    """Ctrl-C: the processes got the terminal's SIGINT too, and record the interruption; a launcher
    interrupted otherwise passes SIGINT on. Whatever still runs after the grace is stopped."""
    wait_for(children, 2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    wait_for(children, GRACE_S)
    stop(children)


def stop(children: list[subprocess.Popen], sig=signal.SIGTERM) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(sig)
    wait_for(children, TERM_S)
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def recorded(run_dir_file: Path) -> dict:
    """What process 0 recorded in its run directory's metrics.json ({} when nothing)."""
    from keras_loss_recipes.runtime.run_files import METRICS_FILE

    if not run_dir_file.exists():
        return {}
    metrics_path = Path(run_dir_file.read_text()) / METRICS_FILE
    return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}


def record_failure(run_dir_file: Path, message: str) -> None:
    """Process 0 records its own end when it can (failed, interrupted, preempted); where it could not, say it in
    its metrics.json."""
    from keras_loss_recipes.reporting.results import RESUMABLE, read_history, write_metrics

    if not run_dir_file.exists() or not Path(run_dir_file.read_text()).is_dir():
        return  # no run directory was prepared
    if recorded(run_dir_file).get("status") in RESUMABLE:
        return
    run_dir = Path(run_dir_file.read_text())
    write_metrics(run_dir, {"status": "failed", "error": message, "epochs_completed": len(read_history(run_dir))})


def main(argv: list[str]) -> int:
    args = parse(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="recipes-launch-") as scratch:
        run_dir_file = Path(scratch) / "run_dir"
        children = start(args.processes, args.overrides, Path(scratch))
        signal.signal(signal.SIGTERM, _passed_on(children))
        try:
            failed = watch(children)
        except KeyboardInterrupt:
            interrupt(children)
            print(f"launch: interrupted; stopped the {len(children)} processes", file=sys.stderr, flush=True)
            return 130
        except Terminated:
            stop(children)
            record_failure(run_dir_file, "the launcher was terminated (SIGTERM); it stopped every process")
            print("launch: terminated; stopped every process", file=sys.stderr, flush=True)
            return 128 + signal.SIGTERM
        if failed is None:
            print(f"launch: {args.processes} processes finished in {time.monotonic() - started:.1f} s", flush=True)
            return 0
        rank, code = failed
        record = recorded(run_dir_file)
        if record.get("status") == "preempted" and all(child.returncode == code for child in children):
            point = record.get("stopped_at") or "the last saved epoch"
            print(f"launch: preempted ({record.get('signal')}): every process stopped after {point} and exited "
                  f"with {code}", file=sys.stderr, flush=True)
            return code
        message = (f"process {rank} of {args.processes} {how_it_ended(code)}; every process ended "
                   f"{time.monotonic() - started:.1f} s after the launch")
        if code != 2:  # 2: a user error, before any training
            record_failure(run_dir_file, message)
        print(f"launch: {message}", file=sys.stderr, flush=True)
        return code if code > 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
