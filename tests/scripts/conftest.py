"""The scripts are not a package: their folder goes on the import path, as when they run as ``python scripts/X.py``.
``slurm_cluster`` starts a real one-node SLURM (munged, slurmctld, slurmd) on localhost for the session."""

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun")
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Cluster:
    """A running local cluster; clients reach it with ``SLURM_CONF=conf``."""

    conf: Path
    logs: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(root: Path, host: str) -> str:
    mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    # No cgroup.conf beside it: with linuxproc process tracking and no task plugin, slurmd needs no cgroups.
    return f"""ClusterName=bhvittest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge/socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mib} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(procs: list[subprocess.Popen], cluster: Cluster | None) -> None:
    if cluster is not None:
        try:  # stops slurmctld and slurmd; the pids below are the fallback
            subprocess.run(["scontrol", "shutdown"], env=cluster.env(), capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for p in reversed(procs):  # slurmd, slurmctld, then munged, which they authenticate with
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM on localhost with its own munge key, state, spool and ports. Where this machine cannot run
    one (SLURM not installed, not root) the test fails, saying why: the README's test command installs SLURM, so a
    skip would hide a broken install step; leave the test out explicitly with ``-m "not slurm"``. An installed SLURM
    that does not come up fails with its daemons' last log lines."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    deselect = 'or leave this test out with -m "not slurm"'
    if missing:
        pytest.fail(f"SLURM is not installed (missing {', '.join(missing)}): run scripts/install.sh --slurm {deselect}")
    if os.geteuid() != 0:
        pytest.fail(f"starting slurmd and munged needs root: run the tests as root {deselect}")
    root = tmp_path_factory.mktemp("slurm")
    for d in ("munge", "state", "spool", "log"):
        (root / d).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, socket.gethostname().split(".")[0]))
    cluster = Cluster(conf, root / "log")
    munge = ["munged", "--foreground", "--force", f"--socket={root}/munge/socket", f"--key-file={key}"]
    munge += [f"--pid-file={root}/munge/pid", f"--seed-file={root}/munge/seed", f"--log-file={root}/log/munged.log"]
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in (("munged", munge), ("slurmctld", ["slurmctld", "-D"]), ("slurmd", ["slurmd", "-D"])):
            with open(root / "log" / f"{name}.out", "w") as log:
                procs.append(subprocess.Popen(cmd, env=cluster.env(), stdout=log, stderr=subprocess.STDOUT))
            if name == "munged":
                time.sleep(0.5)  # the socket must exist before slurmctld authenticates
        deadline = time.monotonic() + START_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline and state != "idle":
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
            sinfo = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=cluster.env(), capture_output=True)
            state = sinfo.stdout.decode().strip()
        if state != "idle":
            tails = {p.name: p.read_text().strip().splitlines()[-3:] for p in sorted(cluster.logs.glob("*"))}
            pytest.fail(f"the local SLURM did not come up within {START_TIMEOUT_S} s (node {state!r}): {tails}")
        yield cluster
    finally:
        _stop(procs, cluster)
