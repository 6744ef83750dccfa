"""Child processes, one per Keras backend (Keras picks its backend once per process): start, follow, collect.

The one protocol between a parent and its workers:

    worker   prints each result as one stdout line `RESULT <json>` (`report`); any other stdout
             line is progress; its stderr goes to a log file.
    parent   `run` starts the worker with KERAS_BACKEND set, passes each result (`on_result`)
             and progress line (`on_line`) on as it comes, and returns the results in order.

A worker that exits with a non-zero code is one error, the same for every parent:
`WorkerFailed`, which names the backend, the exit code and the end of the worker's stderr.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]  # where `python -m recipes...` finds the project
RESULT_PREFIX = "RESULT "
STDERR_TAIL_LINES = 30  # of a failed worker's stderr, in the error


def report(result: dict) -> None:
    """In a worker: hand one result to the parent."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def result_of(line: str) -> dict | None:
    """The result one line of a worker's stdout carries; None for a progress line."""
    return json.loads(line[len(RESULT_PREFIX):]) if line.startswith(RESULT_PREFIX) else None


def results_in(stdout: str) -> list[dict]:
    """Every result in a worker's whole stdout (a caller that waited for it to end)."""
    return [result for line in stdout.splitlines() if (result := result_of(line)) is not None]


class WorkerFailed(RuntimeError):
    """A worker exited with a non-zero code."""

    def __init__(self, backend: str, code: int, log_file: Path):
        self.backend, self.code, self.log_file = backend, code, Path(log_file)
        lines = self.log_file.read_text(errors="replace").splitlines() if self.log_file.is_file() else []
        tail = "\n".join(lines[-STDERR_TAIL_LINES:]) or "(nothing)"
        super().__init__(f"the {backend} worker exited with code {code}; the end of its stderr "
                         f"({self.log_file}):\n{tail}")


@dataclass(frozen=True)
class Worker:
    """One child process: its backend, what follows `python` on its command line, where its stderr goes."""

    backend: str
    args: list[str]  # ["-m", "package.module", ...] or [script path, ...]
    log_file: Path


def run(worker: Worker, on_result: Callable[[dict], None] | None = None,
        on_line: Callable[[str], None] | None = None) -> list[dict]:
    """Run `worker` to its end; its results, in the order it reported them. WorkerFailed if it failed."""
    env = dict(os.environ, KERAS_BACKEND=worker.backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    results = []
    Path(worker.log_file).parent.mkdir(parents=True, exist_ok=True)
    with Path(worker.log_file).open("w") as log_file:
        proc = subprocess.Popen([sys.executable, *worker.args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=log_file, text=True)
        for line in proc.stdout:
            result = result_of(line)
            if result is not None:
                results.append(result)
                if on_result is not None:
                    on_result(result)
            elif on_line is not None:
                on_line(line.rstrip("\n"))
        code = proc.wait()
    if code != 0:
        raise WorkerFailed(worker.backend, code, worker.log_file)
    return results


def each_backend(backends: list[str], run_one: Callable[[str], list], side_by_side: bool) -> dict[str, list]:
    """`run_one(backend)` for every backend: side by side (a thread each), or one after another."""
    if not side_by_side or len(backends) < 2:
        return {backend: run_one(backend) for backend in backends}
    with ThreadPoolExecutor(len(backends)) as pool:
        return dict(zip(backends, pool.map(run_one, backends)))
