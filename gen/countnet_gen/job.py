"""A generation job of the workflow (the Snakefile's gen rule): ``python -m countnet_gen.job``
with the request as JSON on stdin (nothing is unpickled), its output the job's log.

Snakemake runs a shell rule's command directly, where a ``run:`` block costs a second
Snakemake process that parses the whole workflow again: seconds a job, over dozens of small
sets (BENCHMARKS.md, "The main job").
"""

from __future__ import annotations

import json
import sys

from countnet.errors import USER_ERRORS, one_line
from countnet_gen.spec import DatasetSpec
from countnet_gen.writer import generate_logged


def main() -> int:
    """{"spec": DatasetSpec as a dict, "out": folder, "workers": N} -> the set in ``out``."""
    request = json.loads(sys.stdin.read())

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        spec = DatasetSpec.from_dict(request["spec"], check_layouts=False)  # the plan ran them
        generate_logged(spec, request["out"], workers=int(request["workers"]), say=say)
    except USER_ERRORS as e:
        say(f"error: {one_line(e)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
