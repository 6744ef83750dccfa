"""Shared fixtures: composing configs the way train.py does, and running train.py."""
from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# CI (`.ci/run`, CI=true) installs everything the tests use and runs as root, so there a missing package or
# service is a broken install step: a failure. Elsewhere it is a skip that says what is missing.
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip with `reason`, or on CI fail with it."""
    if ON_CI:
        pytest.fail(f"{reason}; on CI this must be there (the README's test command installs it)", pytrace=False)
    pytest.skip(reason)


def needs_module(name: str, install: str):
    """Import `name` (installed by `install`), or skip (fail on CI) saying so."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        unavailable(f"{name} is not installed ({install}): {err}")


def needs(name: str, install: str) -> pytest.MarkDecorator:
    """A mark for tests that need module `name`: a skip where it is missing, except on CI, where the test
    runs and fails on the missing import."""
    return pytest.mark.skipif(not ON_CI and importlib.util.find_spec(name) is None,
                              reason=f"{name} is not installed (optional: {install})")


INSTALLS = {"jax": "pip install -r requirements-jax.txt", "torch": "pip install -r requirements-torch.txt"}


def each_backend(seconds: int) -> list:
    """Parameters for a test run once per backend in a child process of its own, about `seconds` each:
    TensorFlow, then JAX and PyTorch where installed (`needs`)."""
    return [pytest.param("tensorflow", marks=pytest.mark.slow(seconds=seconds)),
            *(pytest.param(name, marks=[needs(name, install), pytest.mark.slow(seconds=seconds)])
              for name, install in INSTALLS.items())]


# Small enough for 2 CPU cores: a few hundred images, one epoch, the mlp.
TINY = ["model=mlp", "data.max_train_examples=300", "trainer.epochs=1", "trainer.verbose=0"]


def pytest_collection_modifyitems(config, items):
    """The longest tests first: `@pytest.mark.slow(seconds=N)` (N: about what it takes on 2 cores), then
    the other slow ones, then the rest, each in its files' order. The two workers then end together,
    rather than one running a long test it picked up last while the other waits."""

    def expected_seconds(item) -> float:
        mark = item.get_closest_marker("slow")
        return 0.0 if mark is None else float(mark.kwargs.get("seconds", 1))

    items.sort(key=expected_seconds, reverse=True)


def once_per_run(tmp_path_factory, name: str, make) -> tuple[Path, object]:
    """`make(directory)` once for the whole test run, by whichever pytest-xdist worker asks first; the
    others wait for it. Returns the directory and what `make` returned (a JSON value). For the expensive
    session fixtures: the workers take tests one by one, so any of them may need one."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base directories share this one
    directory, result = root / f"once_{name}", root / f"once_{name}.json"
    with open(root / f"once_{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not result.exists():
            directory.mkdir(exist_ok=True)
            result.write_text(json.dumps(make(directory)))
        return directory, json.loads(result.read_text())


def jax_compile_cache(directory: Path) -> dict:
    """Environment for child processes that run the same JAX programs one after another (a run straight through,
    the one stopped, its resume): JAX's persistent compilation cache in `directory`, every program kept, so the
    later ones load what the first compiled (compiling is most of a small JAX run's time). The executable is the
    one compilation made, so the figures are unchanged. Not for processes running at the same time: the cache
    writes its files without a lock."""
    return {"JAX_COMPILATION_CACHE_DIR": str(directory), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def project_env() -> dict:
    """The environment for running the project's own scripts in a child process."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))


@pytest.fixture
def compose():
    """compose(*overrides) -> the config train.py would see."""
    from keras_loss_recipes.config.compose import compose_train

    return lambda *overrides: compose_train(overrides)


@pytest.fixture
def train_cli():
    """train_cli(*args, cwd=...) -> CompletedProcess of `python train.py args`."""

    def _run(*args, cwd=None, timeout=300):
        return subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=cwd or ROOT, env=project_env(), capture_output=True, text=True, timeout=timeout,
        )

    return _run


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> tuple[Path, dict]:
    """`python train.py -m` of TINY over two losses and two seeds (four jobs in one process), once for the whole
    test run: its sweep directory, and the command's {"returncode", "stdout", "stderr"}. Read only:
    tests/test_sweeps.py checks its directories, HParams and report; tests/test_reliability.py serves it to a
    real TensorBoard."""

    def run(directory: Path) -> dict:
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *TINY_SWEEP,
                               f"hydra.sweep.dir={directory / 'sweep'}"], cwd=ROOT, env=project_env(),
                              capture_output=True, text=True, timeout=600)
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    directory, result = once_per_run(tmp_path_factory, "tiny_sweep", run)
    return directory / "sweep", result


TINY_SWEEP = [*TINY, "loss=sparse_from_logits,clipped_probs", "seed=0,1"]


@pytest.fixture(scope="session")
def one_process_job(tmp_path_factory) -> Path:
    """The run directory of scripts/multiprocess_figures.py's JOB trained by one process, once for the whole
    test run: what the two processes that train it together (the launcher's, srun's) must agree with."""
    from scripts.multiprocess_figures import JOB

    def run(directory: Path) -> None:
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), *JOB, f"hydra.run.dir={directory / 'one'}"],
                              cwd=directory, env=project_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    return once_per_run(tmp_path_factory, "one_process_job", run)[0] / "one"


@pytest.fixture(scope="session")
def two_process_job(tmp_path_factory) -> Path:
    """The run directory of scripts/multiprocess_figures.py's KILL_JOB trained straight through by two processes
    (scripts/launch_processes.py), once for the whole test run: what a group's run that was killed or preempted
    must end as, once resumed."""
    from scripts.faults import straight_group_run

    return once_per_run(tmp_path_factory, "two_process_job",
                        lambda directory: straight_group_run(directory / "straight", directory))[0] / "straight"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster with accounting (scripts/slurm_cluster.py), for the whole session.

    Installs Debian's packages first when they are missing; skips where that cannot
    be done (not root, no apt-get), and fails on CI, which runs as root with apt.
    Every daemon is stopped by its PID at the end.
    """
    from scripts.slurm_cluster import ClusterUnavailable, start

    try:
        cluster = start(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as reason:
        unavailable(f"no local SLURM cluster: {reason}")
    try:
        yield cluster
    finally:
        cluster.stop()
