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
