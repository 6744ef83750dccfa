"""A real TensorBoard server on loopback, for the screenshots and the dashboard tests.

    with serve(logdir) as base:          # base: "http://127.0.0.1:<port>/"
        post_json(base + "data/plugin/hparams/experiment", {...})

The server is started as its own process, waited for until it answers, and
stopped by its PID at the end of the block.
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def hparams_default_columns(base: str) -> tuple[list[str], list[str]]:
    """The hparam and metric columns the HParams dashboard at `base` shows before any click.

    Its page sorts the hparams the experiment lists by `differs` (a stable sort)
    and shows the first five hparams and the first five metrics.
    """
    experiment = post_json(base + "data/plugin/hparams/experiment",
                           {"experimentName": "", "hparamsLimit": 1000, "includeMetrics": True})
    hparams = sorted(experiment["hparamInfos"], key=lambda info: not info.get("differs", False))
    return [h["name"] for h in hparams[:5]], [m["name"]["tag"] for m in experiment["metricInfos"][:5]]


@contextlib.contextmanager
def serve(logdir: Path, timeout: float = 90.0):
    """`tensorboard --logdir logdir` on 127.0.0.1; yields its base URL once it has read the logs."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if get_json(base + "data/runs"):  # answers, and has loaded at least one run
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tensorboard on port {port} did not come up (exit code {server.poll()})")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
