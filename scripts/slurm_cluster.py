"""A one-node SLURM cluster with accounting on this machine, in a directory of its own.

    python scripts/slurm_cluster.py start DIR   # installs what is missing, starts, prints SLURM_CONF
    python scripts/slurm_cluster.py stop DIR    # stops every daemon it started, by its PID

For the SLURM tests (tests/test_slurm.py starts one per session) and for trying
the `hydra/launcher=slurm_*` presets without a cluster. It runs as root: it
installs Debian's slurmctld, slurmd, slurm-client, slurmdbd, munge and
mariadb-server with apt-get when they are missing, then starts, in DIR:

    munged      the credentials every SLURM daemon and command checks (own key, own socket)
    mariadbd    accounting storage, a private data directory, listening on 127.0.0.1 only
    slurmdbd    accounting: without it a killed job never reports an end state and
                submitit waits for its result forever
    slurmctld   the controller, and slurmd, the one node (this machine's CPUs, at least 4)

No systemd and no cgroups (proctrack/linuxproc, task/none). The PIDs go to
DIR/pids.json; `stop` ends each daemon by its PID and waits for it. Clients
(sbatch, squeue, sacct, submitit) find the cluster through SLURM_CONF=DIR/slurm.conf.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The program each Debian package provides, to tell what is missing.
PACKAGES = {
    "slurmctld": "slurmctld", "slurmd": "slurmd", "slurm-client": "sbatch", "slurmdbd": "slurmdbd",
    "munge": "munged", "mariadb-server": "mariadbd",
}
PARTITION = "cpu"  # the partition the presets in configs/hydra/launcher/ name
PIDS_FILE = "pids.json"
# Daemons in the order they start; stopped in reverse.
ORDER = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the cluster (not root, no apt-get, install failed); the reason is the message."""


def _program(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)


def missing_packages() -> list[str]:
    return [package for package, program in PACKAGES.items() if _program(program) is None]


def ensure_installed() -> float:
    """Install the missing Debian packages (as root, with apt-get); the seconds it took."""
    missing = missing_packages()
    if not missing:
        return 0.0
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"SLURM packages missing ({', '.join(missing)}) and not root to install them")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"SLURM packages missing ({', '.join(missing)}) and no apt-get to install them")
    started = time.perf_counter()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0 or missing_packages():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        raise ClusterUnavailable(f"apt-get could not install {', '.join(missing)}: {tail[0]}")
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    """A started cluster: where it lives, how clients reach it, how long it took to start."""

    root: Path
    startup_s: float = 0.0
    install_s: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    def env(self) -> dict:
        """The environment for clients (sbatch, sacct, submitit): the SLURM_CONF of this cluster."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        stop(self.root)


def _write_configs(root: Path, ports: dict) -> None:
    host = socket.gethostname().split(".")[0]
    memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    munge_socket = root / "munge" / "munge.socket"
    common = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
    (root / "etc" / "slurm.conf").write_text(f"""# Written by scripts/slurm_cluster.py: a one-node cluster on localhost.
ClusterName=recipes
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports['slurmctld']}
SlurmdPort={ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# No cgroups here: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['slurmdbd']}
# For the slurmdbd connection this names munge's socket (AuthInfo is not used for it).
AccountingStoragePass={munge_socket}
JobCompType=jobcomp/none
# A requeued job waits the credential lifetime before it starts again (SLURM's default 120 s), then for
# the next pass of a scheduler (backfill: every 30 s, the main loop: every 60 s, by default; the backfill
# pass was seen to leave a requeued array task for the main loop): all short here, so that a preempted
# job's requeue costs seconds, not minutes. A launch still has 20 s to check its credential, plenty on a
# loaded machine.
AuthInfo=socket={munge_socket},cred_expire=20
SchedulerParameters=bf_interval=1,sched_interval=2
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=2
MinJobAge=300
InactiveLimit=0
# At least 4 CPUs, so a 4-job test sweep runs at once even on 2 cores (config_overrides allows it).
NodeName={host} NodeAddr=127.0.0.1 CPUs={max(4, os.cpu_count())} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    dbd = root / "etc" / "slurmdbd.conf"
    dbd.write_text(f"""# Written by scripts/slurm_cluster.py.
{common}DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports['slurmdbd']}
SlurmUser=root
PidFile={root}/run/slurmdbd.pid
LogFile={root}/log/slurmdbd.log
StorageType=accounting_storage/mysql
# An address, not "localhost": with localhost the client looks for the default socket file.
StorageHost=127.0.0.1
StoragePort={ports['mariadb']}
StorageUser=root
StorageLoc=slurm_acct_db
""")
    dbd.chmod(0o600)  # slurmdbd refuses a config others can read


def _wait_for(what: str, ready, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = log.read_text().strip().splitlines()[-5:] if log and log.exists() else []
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s" + (": " + " | ".join(tail) if tail else ""))


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _spawn(root: Path, name: str, command: list[str], env: dict) -> int:
    log = open(root / "log" / f"{name}.out", "ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)  # Ctrl-C in the terminal reaches stop(), not the daemons
    pids = _read_pids(root)
    pids[name] = process.pid
    (root / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")
    return process.pid


def _read_pids(root: Path) -> dict:
    path = Path(root) / PIDS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def start(root: Path) -> Cluster:
    """Install what is missing, then start the five daemons in `root`; stops them again if one fails."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the local SLURM cluster runs its daemons as root (SlurmUser=root); not root")
    install_s = ensure_installed()
    root = Path(root).resolve()
    started = time.perf_counter()
    for sub in ("etc", "munge", "mysql", "state", "spool", "run", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    ports = {name: free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
    _write_configs(root, ports)
    env = dict(os.environ, SLURM_CONF=str(root / "etc" / "slurm.conf"))
    try:
        _start_daemons(root, ports, env)
    except BaseException:
        stop(root)
        raise
    return Cluster(root, startup_s=round(time.perf_counter() - started, 2), install_s=round(install_s, 2))


def _start_daemons(root: Path, ports: dict, env: dict) -> None:
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "munge.socket"
    _spawn(root, "munged", [_program("munged"), "--foreground", "--force", f"--key-file={key}",
                            f"--socket={munge_socket}", f"--pid-file={root}/run/munged.pid",
                            f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/seed"], env)
    datadir = root / "mysql"
    subprocess.run([_program("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   env=env, capture_output=True, check=True)
    # A private server: loopback only, no grant checks (nothing else can reach it), gone with `stop`.
    _spawn(root, "mariadbd", [_program("mariadbd"), "--no-defaults", f"--datadir={datadir}", "--user=root",
                              "--bind-address=127.0.0.1", f"--port={ports['mariadb']}", "--skip-grant-tables",
                              f"--socket={root}/run/mysqld.sock", f"--pid-file={root}/run/mariadbd.pid",
                              f"--log-error={root}/log/mariadbd.log"], env)
    _wait_for("munged", munge_socket.exists, 10, root / "log" / "munged.log")
    _wait_for("mariadbd", lambda: _listening(ports["mariadb"]), 30, root / "log" / "mariadbd.log")
    _spawn(root, "slurmdbd", [_program("slurmdbd"), "-D"], env)
    _wait_for("slurmdbd", lambda: _listening(ports["slurmdbd"]), 30, root / "log" / "slurmdbd.log")
    _spawn(root, "slurmctld", [_program("slurmctld"), "-D", "-i"], env)
    _wait_for("slurmctld", lambda: _listening(ports["slurmctld"]), 30, root / "log" / "slurmctld.log")
    _spawn(root, "slurmd", [_program("slurmd"), "-D"], env)

    def node_idle() -> bool:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        return states.strip() == "idle"

    _wait_for("the node", node_idle, 30, root / "log" / "slurmd.log")


def stop(root: Path, timeout: float = 15) -> None:
    """Cancel the cluster's jobs, then stop every daemon started in `root` by its PID, last started first.

    Jobs first: a job's processes belong to slurmstepd, not slurmd, and would
    outlive the daemons. Each daemon gets SIGTERM, then SIGKILL after `timeout`.
    """
    root = Path(root)
    pids = _read_pids(root)
    if "slurmctld" in pids and _alive(pids["slurmctld"]):
        _cancel_jobs(root, timeout)
    for name in reversed(ORDER):
        pid = pids.get(name)
        if pid is None:
            continue
        _end(pid, timeout)
        del pids[name]
        (root / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")


def _cancel_jobs(root: Path, timeout: float) -> None:
    env = dict(os.environ, SLURM_CONF=str(root / "etc" / "slurm.conf"))
    subprocess.run(["scancel", f"--partition={PARTITION}"], env=env, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=30)
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(0.2)


def _end(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when it is our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # started by an earlier `start` command: not ours to reap
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python scripts/slurm_cluster.py start|stop DIR", file=sys.stderr)
        return 2
    action, root = argv
    if action == "stop":
        stop(Path(root))
        return 0
    try:
        cluster = start(Path(root))
    except ClusterUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"cluster up in {cluster.startup_s} s (install {cluster.install_s} s); to use it:\n"
          f"export SLURM_CONF={cluster.conf}\n"
          f"stop it with: python scripts/slurm_cluster.py stop {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
