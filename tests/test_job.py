"""How a workflow training job (countnet_classify/job.py) treats the partial folder a
stopped job left: same options resume, other options start over, a damaged folder goes to
--resume's checks. Training itself is replaced here (what a resume then trains is checked
on a real cluster: tests/test_slurm.py)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from countnet_classify import job
from countnet_classify.spec import RunSpec


@pytest.fixture
def trained(monkeypatch):
    """The specs train() was called with."""
    calls = []
    monkeypatch.setattr("countnet_classify.train.train", lambda spec, say: calls.append(spec))
    return calls


def partial_with(tmp_path, record) -> RunSpec:
    spec = RunSpec(data=str(tmp_path), name="x", runs_dir=str(tmp_path / "runs"), force=True)
    partial = tmp_path / "runs" / ".x.partial"
    partial.mkdir(parents=True)
    (partial / "config.yaml").write_text(record(spec) if callable(record) else record)
    return spec


def test_the_same_options_resume(tmp_path, trained):
    spec = partial_with(tmp_path, lambda s: yaml.safe_dump({"resume_key": s.resume_key()}))
    said = []
    job.train_resuming(spec, said.append)
    assert trained == [dataclasses.replace(spec, resume=True)]
    assert said == [f"resuming the interrupted run in {tmp_path}/runs/.x.partial from its last "
                    "checkpoint"]  # fmt: skip


def test_other_options_start_over_saying_so(tmp_path, trained):
    key = lambda s: yaml.safe_dump({"resume_key": {**s.resume_key(), "lr": 0.5}})  # noqa: E731
    spec = partial_with(tmp_path, key)
    said = []
    job.train_resuming(spec, said.append)
    assert trained == [spec] and not spec.resume
    assert len(said) == 1 and "other options (lr): starting it over" in said[0]


@pytest.mark.parametrize("text", ["", "resume_key: [1, 2]\n", "{: bad"])
def test_a_damaged_folder_goes_to_resume_checks(tmp_path, trained, text):
    spec = partial_with(tmp_path, text)
    said = []
    job.train_resuming(spec, said.append)
    assert trained == [dataclasses.replace(spec, resume=True)] and said == []


def test_no_partial_folder_trains_as_asked(tmp_path, trained):
    spec = RunSpec(data=str(tmp_path), name="x", runs_dir=str(tmp_path / "runs"), force=True)
    job.train_resuming(spec, print)
    assert trained == [spec]


def test_a_job_that_fails_says_why_in_one_line(tmp_path):
    """The workflow's job process (its output is the job's log): a request it cannot do
    ends in one line and exit 1, not a traceback; a baseline job never imports torch."""
    import json
    import subprocess
    import sys

    request = {"job": "baseline", "data": str(tmp_path / "absent"), "out": str(tmp_path / "o"),
               "threads": 1}  # fmt: skip
    code = ("import runpy, sys; runpy.run_module('countnet_classify.job', run_name='__main__', "
            "alter_sys=True)")  # fmt: skip
    probe = f"import atexit, sys; atexit.register(lambda: print('torch' in sys.modules)); {code}"
    done = subprocess.run([sys.executable, "-c", probe], input=json.dumps(request),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and done.stderr == "", done.stderr
    assert lines[0].startswith("error: ") and "absent" in lines[0] and lines[1] == "False"


def test_a_request_reaches_its_job_as_written_whatever_it_holds(tmp_path):
    """countnet.jobs' command through Snakemake itself, as the workflow's rules run it: text
    with quotes, `$(...)`, backticks, a newline and non-ASCII reaches the job unchanged and
    runs nothing; a log path with a space and a quote is one path (json.tool stands in for
    the job: it prints the request it reads)."""
    import json
    import subprocess
    import sys

    nasty = 'it\'s "q" $(touch pwned) `touch pwned2`; $HOME\n é \\ %s {x}'
    (tmp_path / "Snakefile").write_text(
        "import os, sys\n"
        "from countnet.jobs import Request, job_command\n"
        "os.environ['COUNTNET_PYTHON'] = sys.executable\n"
        "rule r:\n"
        "    output: 'out.json'\n"
        "    log: \"logs/it's a log.log\"\n"
        f"    params: request=Request(note={nasty!r}, n=[1, 2])\n"
        "    shell: job_command('json.tool') + ' && cp {log:q} {output:q}'\n"
    )  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(tmp_path),
           "-s", str(tmp_path / "Snakefile")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text()) == {"note": nasty, "n": [1, 2]}
    assert not any(tmp_path.rglob("pwned*"))


def test_a_job_interrupted_ends_its_log_with_one_line_and_keeps_nothing(tmp_path):
    """SIGTERM (a cluster's time limit, a killed workflow) to a gen job mid-set: the last
    line says so and what a rerun does, the status is the signal's, no staging is left."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from countnet_gen.spec import DatasetSpec

    spec = DatasetSpec(counts=(40, 50), per_class=2000, size=64, radius=1.5)
    request = json.dumps({"spec": spec.to_dict(), "out": str(tmp_path / "set"), "workers": 1})
    log = tmp_path / "gen.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "countnet_gen.job"], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        proc.stdin.write(request)
        proc.stdin.close()
        deadline = time.monotonic() + 120
        while "images (" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=60)
    lines = log.read_text().splitlines()
    assert status == 143 and lines[-1].startswith("error: terminated (SIGTERM): nothing half-made")
    assert not any("Traceback" in ln for ln in lines)
    assert [p.name for p in tmp_path.iterdir()] == ["gen.log"]  # no set, no staging


def test_an_error_raised_in_a_fastai_callback_is_still_one_line():
    """fastai rewrites the message of an exception a callback raises (where in the loop, a
    newline and a tab, then the message): the line reported is countnet's own."""
    from countnet.errors import CountnetError, DiskFull, one_line

    def from_callback(error):
        error.args = ("Exception occured in `Checkpoint` when calling event `before_fit`:\n\t"
                      + str(error.args[0]),)  # fmt: skip
        return error

    assert one_line(from_callback(DiskFull("runs/.e.partial/checkpoint.pt"))) == (
        "disk full writing runs/.e.partial/checkpoint.pt: free space and rerun"
    )
    assert one_line(from_callback(CountnetError("bad thing"))) == "bad thing"
