"""The workflow on a real SLURM cluster through profiles/slurm, as a cluster user runs it.

The test starts a one-node cluster of its own (munged, slurmctld, slurmd from Debian's
`munge` and `slurm-wlm`, private key, state and ports, no accounting daemon), runs a tiny
config through Snakemake's SLURM executor with the shipped profile, checks the run folders
and the report, and stops the daemons. Its config goes where a cluster's lives,
/etc/slurm/slurm.conf (the executor's job steps drop SLURM_CONF before their nested srun),
so the test never runs where a SLURM config already exists, and removes its own afterwards.
It needs root (slurmd) and the daemons installed; `.ci/run` installs them when it runs as
root, elsewhere the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import process_alive
from tests.test_workflow import REPO

pytestmark = pytest.mark.slurm

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
TINY = """
datasets:
  tiny: {range: 1-2, per_class: 12, size: 32, radius: 3, valid_pct: 0.25}
train: {arch: resnet18, size: 32, bs: 8, epochs: 1, lr: 0.001, lr_find_iters: 0, workers: 0,
        head: linear, transforms: none}
experiments:
  a: {data: tiny}
sweeps:
  sw: {data: tiny, params: {lr: [0.001, 0.01]}, seeds: 1}
"""


def _free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _node_line() -> str:
    """This machine as slurmd sees it (CPUs, memory): a node SLURM will accept."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    line = out.splitlines()[0]
    return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"


def _clean_env() -> dict[str, str]:
    """This environment without SLURM client settings (they could point at another cluster)."""
    prefixes = ("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "SALLOC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _own_leftover(conf: Path) -> bool:
    """This test's own config, left by a run killed before its clean-up: replaced, not
    a real cluster's (left in place it also costs every `snakemake` call here ~9 s: the
    SLURM plugin's `scontrol` waits for a controller that is gone)."""
    try:
        return conf.read_text().startswith("ClusterName=countnet-test\n")
    except (OSError, UnicodeDecodeError):
        return False


def _skip_reason() -> str | None:
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing; .ci/run installs it as root)"
    if os.geteuid() != 0:
        return "slurmd needs root"
    if (SYSTEM_CONF.exists() and not _own_leftover(SYSTEM_CONF)) or os.environ.get("SLURM_CONF"):
        return "a SLURM configuration exists here: a real cluster's setup is not touched"
    running = subprocess.run(["pgrep", "-x", "slurmctld|slurmd|munged"], capture_output=True)
    if running.returncode == 0:
        return "SLURM or munge daemons already run here: a real cluster is not touched"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster; yields the environment its clients need."""
    if reason := _skip_reason():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool", "log", "munge"):
        (root / d).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = root / "munge" / "munge.sock"
    host = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)
    conf = SYSTEM_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"""ClusterName=countnet-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={sock}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
{_node_line()}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = _clean_env()
    pidfiles = [root / "munge" / "munged.pid", root / "slurmctld.pid", root / "slurmd.pid"]
    starts = [
        ["munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={pidfiles[0]}",
         f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/seed"],
        ["slurmctld", "-i", "-f", str(conf)],
        ["slurmd", "-f", str(conf)],
    ]  # fmt: skip
    try:
        for cmd in starts:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, f"{cmd[0]} did not start: {proc.stderr[-2000:]}"
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(p.read_text()[-2000:] for p in (root / "log").iterdir())
            pytest.fail(f"the test cluster did not come up (node state {state!r}):\n{logs}")
        yield env
    finally:
        # Jobs first (a timed-out run leaves them running), then the daemons, by force if
        # they do not stop.
        subprocess.run(["scancel", "--full", "--signal=KILL", "--user=root"], env=env,
                       capture_output=True, timeout=30)  # fmt: skip
        # their step daemons end only while slurmd runs: stopped first, they stay behind
        deadline = time.time() + 20
        while time.time() < deadline:
            left = subprocess.run(["squeue", "-h", "-t", "R,CG,PD"], env=env,
                                  capture_output=True, text=True, timeout=30)  # fmt: skip
            if left.returncode or not left.stdout.strip():
                break
            time.sleep(0.5)
        pids = []
        for pidfile in reversed(pidfiles):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pidfile.read_text().split()[0]))
                os.kill(pids[-1], signal.SIGTERM)
        deadline = time.time() + 15
        while pids and time.time() < deadline:
            pids = [p for p in pids if process_alive(p)]
            time.sleep(0.2)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        conf.unlink(missing_ok=True)


def test_workflow_runs_through_the_slurm_profile(slurm, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    # The shipped profile as is, sized down to this 2-core node (one thread a training job,
    # so two run side by side), and squeue for job status:
    # this cluster, like many small ones, keeps no accounting database for sacct.
    cmd = [
        sys.executable, "-m", "snakemake", "all",
        "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(cfg),
        "--workflow-profile", str(REPO / "profiles" / "slurm"),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "gen=2", "select_transforms=2", "train=1", "sweep_run=1", "baseline=2",
        "probes=1",
        "--set-resources", "gen:mem_mb=1000", "train:mem_mb=3000", "select_transforms:mem_mb=3000",
        "sweep_run:mem_mb=3000", "baseline:mem_mb=1000", "probes:mem_mb=3000",
        "--default-resources", "mem_mb=1000", "runtime=30",
        "--latency-wait", "5", "--slurm-keep-successful-logs",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=slurm, capture_output=True, text=True, timeout=420)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # gen, the classical counter on the set, train and the sweep's two runs went through
    # sbatch (five SLURM jobs, their job logs: the sweep fans out), the target, the sweep's
    # summary and the report ran here (localrules).
    assert len(re.findall(r"has been submitted with SLURM jobid \d+", out)) == 5, out[-3000:]
    logs = tmp_path / ".snakemake" / "slurm_logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "rule_baseline", "rule_gen", "rule_sweep_run", "rule_train"
    ]  # fmt: skip
    assert (tmp_path / "runs" / "baselines" / "tiny" / "metrics.json").is_file()
    assert len(list((logs / "rule_sweep_run").iterdir())) == 2  # one per (point, seed)
    assert "localrule report" in out and "localrule all" in out
    assert "localrule sweep_summary" in out
    assert "## Sweep sw" in (tmp_path / "runs" / "report.md").read_text()
    assert len(list((tmp_path / "datasets" / "tiny").rglob("*.png"))) == 24
    metrics = (tmp_path / "runs" / "a" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,train_loss,valid_loss,error_rate") and len(metrics) == 2
    assert (tmp_path / "runs" / "a" / "model.safetensors").is_file()
    assert "| a | tiny |" in (tmp_path / "runs" / "report.md").read_text()


RESUME = """
train: {{arch: resnet18, pretrained: false, size: 32, bs: 8, epochs: 2, lr: 0.01,
        lr_find_iters: 0, workers: 0, head: linear, transforms: none, precise_bn: 0}}
experiments:
  whole: {{data: {data}}}
  cut: {{data: {data}}}
"""


def _job_of(env: dict, rule_wildcards: str) -> str | None:
    """The SLURM job id of the running job whose comment (the executor's
    rule_<rule>_wildcards_<wildcards>) is ``rule_wildcards``."""
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i|%k"], env=env,
                         capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    ids = [i for i, _, c in (ln.partition("|") for ln in out.splitlines()) if c == rule_wildcards]
    return ids[0] if len(ids) == 1 else None


def test_a_job_signalled_by_slurm_resumes_when_rerun(slurm, tmp_path):
    """SLURM's SIGTERM (a time limit reached, --signal, a preemption) to a training job after
    its first epoch's checkpoint: the profile's retry resumes that run from its checkpoint
    (the epoch trained before the signal is kept, not trained again), and the run equals an
    uninterrupted one trained beside it."""
    from countnet.tables import read_csv
    from countnet_gen.spec import DatasetSpec
    from countnet_gen.writer import generate
    from tests.test_resume import checkpoint_epoch

    # big enough that an epoch outlasts scancel's round trip on one thread
    data = generate(DatasetSpec(counts=(1, 3), per_class=20, size=32, radius=(3, 5),
                                valid_pct=0.25), tmp_path / "data", workers=1)  # fmt: skip
    cfg = tmp_path / "resume.yaml"
    cfg.write_text(RESUME.format(data=data))
    work = tmp_path / "work"
    cmd = [
        sys.executable, "-m", "snakemake", "runs/whole", "runs/cut",  # the runs, no report
        "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(cfg),
        "--workflow-profile", str(REPO / "profiles" / "slurm"),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "train=1", "--set-resources", "train:mem_mb=3000",
        "--default-resources", "mem_mb=1000", "runtime=30", "--latency-wait", "5",
    ]  # fmt: skip
    log = tmp_path / "snakemake.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=slurm, stdout=f, stderr=subprocess.STDOUT)
    partial, job = work / "runs" / ".cut.partial", None
    try:
        deadline = time.time() + 300
        while not (partial / "checkpoint.pt").is_file() or checkpoint_epoch(partial) < 1:
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        job = _job_of(slurm, "rule_train_wildcards_cut")
        assert job, subprocess.run(["squeue", "-o", "%i %k %T"], env=slurm, text=True,
                                   capture_output=True).stdout  # fmt: skip
        # what SLURM does at --signal's time, at a time limit or a preemption
        subprocess.run(["scancel", "--signal=TERM", job], env=slurm, check=True, timeout=30)
        before = read_csv(partial / "metrics.csv")  # the epochs trained before the signal
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    assert len(before) == 1, before  # stopped mid-run: the rerun had epochs left to train
    assert len(re.findall(r"has been submitted with SLURM jobid \d+", out)) == 3, out[-3000:]
    assert "resuming the interrupted run" in (work / "logs" / "train" / "cut.log").read_text()
    cut, whole = (
        read_csv(work / "runs" / "cut" / "metrics.csv"),
        read_csv(work / "runs" / "whole" / "metrics.csv"),
    )
    assert cut[: len(before)] == before  # kept as trained before the signal, times included
    drop_time = [
        [{k: v for k, v in r.items() if k != "time"} for r in rows] for rows in (cut, whole)
    ]
    assert drop_time[0] == drop_time[1] and len(cut) == 2
    assert not (work / "runs" / ".cut.partial").exists()
