"""Measure the figures of docs/scale.md's "One model across several processes (JAX)".

    python scripts/multiprocess_figures.py      # ~3 min on 2 cores: docs/multiprocess.json, the block in docs/scale.md

1. The mlp on 512 images, 2 epochs, global batch 128, trained by one process and
   by two (scripts/launch_processes.py): the largest difference between their
   per-epoch losses and accuracies and their test figures, the wall time of each,
   and every address the two processes listened on while they ran.
2. Two processes on 1,024 images, 6 epochs, batch 64; process 1 SIGKILLed once the
   first epoch is done: the seconds until every process had exited, the
   launcher's exit status and last line, and the status the run recorded.

tests/test_multiprocess.py uses the same helpers, and checks that docs/scale.md
shows what docs/multiprocess.json holds.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_loss_recipes.reporting.results import read_history, read_metrics  # noqa: E402
from keras_loss_recipes.runtime import processes  # noqa: E402
from keras_loss_recipes.runtime.run_files import METRICS_FILE  # noqa: E402
from tests import hold  # noqa: E402

LAUNCHER = ROOT / "scripts" / "launch_processes.py"
FIGURES = ROOT / "docs" / "multiprocess.json"
PAGE = ROOT / "docs" / "scale.md"
BEGIN, END = "<!-- multiprocess figures: scripts/multiprocess_figures.py -->", "<!-- end of multiprocess figures -->"
# The mlp on 512 images, 2 epochs of 4 global batches of 128.
JOB = ["backend=jax", "trainer.distribution=data_parallel", "model=mlp", "data.max_train_examples=512",
       "trainer=quick", "trainer.verbose=2"]
# Long enough to be killed in the middle: 6 epochs of 16 batches.
KILL_JOB = ["backend=jax", "trainer.distribution=data_parallel", "model=mlp", "data.max_train_examples=1024",
            "trainer.batch_size=64", "trainer.epochs=6", "trainer.verbose=0"]
COMPARED = {"history": ("loss", "accuracy", "val_loss", "val_accuracy"),
            "test": ("test_accuracy", "test_loss", "test_exact_ce")}


def env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))


def launch_command(*overrides: str, count: int = 2) -> list[str]:
    return [sys.executable, str(LAUNCHER), "--processes", str(count), "--", *overrides]


def listening(pid: int) -> dict:
    """{pid: {"ip:port", ...}} of the sockets the children of `pid` listen on now."""
    import psutil

    found = {}
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            found[child.pid] = {f"{c.laddr.ip}:{c.laddr.port}" for c in child.net_connections("inet")
                                if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return found


def wait_listening(process: subprocess.Popen) -> dict:
    """Wait for `process` to end; {pid: addresses} its children listened on meanwhile."""
    seen: dict = {}
    while process.poll() is None:
        for pid, addresses in listening(process.pid).items():
            seen.setdefault(pid, set()).update(addresses)
        time.sleep(0.2)
    return seen


def is_loopback(address: str) -> bool:
    ip = address.rsplit(":", 1)[0]
    return ip.startswith("127.") or ip in ("::1", "[::1]") or ip.startswith("::ffff:127.")


def largest_differences(one: dict, two: dict) -> dict:
    """Per figure, the largest absolute difference between two runs' metrics.json."""
    out = {key: max(abs(a - b) for a, b in zip(one["history"][key], two["history"][key]))
           for key in COMPARED["history"]}
    out.update({key: abs(one[key] - two[key]) for key in COMPARED["test"]})
    return out


def process_of(launcher: subprocess.Popen, rank: int):
    import psutil

    for child in psutil.Process(launcher.pid).children():
        if child.environ().get(processes.RANK_VAR) == str(rank):
            return child
    raise RuntimeError(f"the launcher has no process {rank}")


def kill_after_first_epoch(run_dir: Path, cwd: Path, environment: dict, timeout: float = 240) -> dict:
    """Launch KILL_JOB, SIGKILL process 1 once an epoch is done; how every process ended. Process 1 holds
    after its first epoch (tests/hold.py), so the run cannot end before the kill on a fast machine;
    process 0 goes on until it waits for process 1's part of the next step."""
    import psutil

    held = {**environment, **hold.asked(**{hold.EPOCH_VAR: "1", hold.PROCESS_VAR: "1"})}
    launcher = subprocess.Popen(launch_command(*KILL_JOB, f"hydra.run.dir={run_dir}"), cwd=cwd, env=held,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not read_history(run_dir):
        if launcher.poll() is not None or time.monotonic() > deadline:
            launcher.kill()
            raise RuntimeError("no epoch finished:\n" + launcher.communicate()[0][-3000:])
        time.sleep(0.1)
    workers = [process_of(launcher, rank) for rank in (0, 1)]
    killed = time.monotonic()
    workers[1].send_signal(signal.SIGKILL)
    out, err = launcher.communicate(timeout=timeout)
    return {
        "seconds_until_all_exited": round(time.monotonic() - killed, 1),
        "left_running": sum(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
        "epochs_before_kill": len(read_history(run_dir)),
        "launcher_exit_status": launcher.returncode,
        "launcher_line": err.strip().splitlines()[-1] if err.strip() else "",
        "recorded_status": read_metrics(run_dir).get("status") if (run_dir / METRICS_FILE).exists() else None,
        "stdout": out, "stderr": err,
    }


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="multiprocess-figures-") as scratch:
        scratch = Path(scratch)
        started = time.monotonic()
        one = subprocess.run([sys.executable, str(ROOT / "train.py"), *JOB, f"hydra.run.dir={scratch / 'one'}"],
                             cwd=scratch, env=env(), capture_output=True, text=True)
        one_s = time.monotonic() - started
        started = time.monotonic()
        two = subprocess.Popen(launch_command(*JOB, f"hydra.run.dir={scratch / 'two'}"), cwd=scratch, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        addresses = wait_listening(two)
        two_s = time.monotonic() - started
        if one.returncode or two.returncode:
            raise RuntimeError(f"a run failed:\n{one.stdout[-2000:]}\n{two.communicate()[0][-2000:]}")
        m1, m2 = read_metrics(scratch / "one"), read_metrics(scratch / "two")
        kill = kill_after_first_epoch(scratch / "killed", scratch, env())
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "job": " ".join(JOB),
        "one_process_wall_s": round(one_s, 1), "two_processes_wall_s": round(two_s, 1),
        "largest_difference": largest_differences(m1, m2),
        "two_processes": {"processes": m2["processes"], "weights_match": m2["weights_match"],
                          "replicas": m2["replicas"], "val_accuracy": m2["val_accuracy"]},
        "listened_on": sorted({a.rsplit(":", 1)[0] for found in addresses.values() for a in found}),
        "listeners": sum(len(found) for found in addresses.values()),
        "kill": {k: v for k, v in kill.items() if k not in ("stdout", "stderr")},
    }


def render(figures: dict) -> str:
    """The block of docs/scale.md that shows `figures`."""
    diff, kill = figures["largest_difference"], figures["kill"]
    worst = max(diff.values())
    return "\n".join([
        BEGIN,
        f"Measured by `python scripts/multiprocess_figures.py` ({figures['machine']}; "
        f"[multiprocess.json](multiprocess.json)):",
        "",
        "| | |",
        "|---|---|",
        f"| 1 process against 2 (`{figures['job']}`) | largest difference of any per-epoch loss or accuracy "
        f"or test figure: {worst:.2g}; `weights_match: {str(figures['two_processes']['weights_match']).lower()}` |",
        f"| wall time, 1 process / 2 processes | {figures['one_process_wall_s']} s / "
        f"{figures['two_processes_wall_s']} s |",
        f"| where the 2 processes listened | {figures['listeners']} sockets, on "
        f"{', '.join(f'`{a}`' for a in figures['listened_on'])} |",
        f"| process 1 SIGKILLed after epoch {kill['epochs_before_kill']} | every process exited "
        f"{kill['seconds_until_all_exited']} s later; the launcher exited with {kill['launcher_exit_status']}; "
        f"the run recorded `{kill['recorded_status']}` |",
        END,
    ])


def page_block(page: str) -> str | None:
    if BEGIN not in page or END not in page:
        return None
    return page[page.index(BEGIN):page.index(END) + len(END)]


def main() -> int:
    figures = measure()
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    page = PAGE.read_text()
    block = page_block(page)
    if block is None:
        print(f"{PAGE} has no block to fill ({BEGIN} ... {END})", file=sys.stderr)
        return 1
    PAGE.write_text(page.replace(block, render(figures)))
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
