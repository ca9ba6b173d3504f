"""A generation job of the workflow (the Snakefile's gen rule): ``python -m countnet_gen.job``
with the request as JSON on stdin (countnet.jobs), its output the job's log."""

from __future__ import annotations

import json
import sys

from countnet.jobs import run_job
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate_logged


def main() -> int:
    """{"spec": DatasetSpec as a dict, "out": folder, "workers": N} -> the set in ``out``."""
    request = json.loads(sys.stdin.read())
    spec = DatasetSpec.from_dict(request["spec"], check_layouts=False)  # the plan ran them

    def work(say) -> None:
        generate_logged(spec, request["out"], workers=int(request["workers"]), say=say)

    return run_job(work, then="nothing half-made is kept; rerun to make the set")


if __name__ == "__main__":
    sys.exit(main())
