# Helpers shared by the rules: config validation, and config -> the library's config models
# (DatasetSpec for generation, RunSpec for training), so rules and CLI share one model.
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from countnet_gen import PIXELS_VERSION
from countnet.errors import CountnetError
from countnet.jobs import Request, job_command
from countnet_gen.spec import DatasetSpec
from countnet_classify.spec import SCRATCH_ONLY

SCHEMA = workflow.source_path("../../config/schemas/config.schema.yaml")


def _check_names(schema_path):
    """A name the schema refuses, said in one line before the schema's dozen-line dump; the
    pattern is the schema's own."""
    import yaml

    with open(schema_path) as f:
        sections = yaml.safe_load(f)["properties"]
    for section in ("datasets", "experiments", "sweeps"):
        pattern = sections[section]["propertyNames"]["pattern"]
        names = config.get(section) if isinstance(config.get(section), dict) else {}
        for name in names:
            if not re.search(pattern, str(name)):  # 2024: YAML's int, the schema skips it
                raise WorkflowError(
                    f"config: {section}: the name {name!r} is not allowed: use letters, "
                    "digits, '.', '_' and '-', starting with a letter or digit"
                )


_check_names(SCHEMA)
validate(config, SCHEMA)

# Every job's process (and a cluster job's) parses this file again to find its rule: the
# checks that take seconds (a set's trial layouts) ran once, in the plan.
PLAN = workflow.is_main_process


def _dataset_specs():
    specs = {}
    for name, entry in config.get("datasets", {}).items():
        try:
            specs[name] = DatasetSpec.from_dict({**entry, "name": name}, check_layouts=PLAN)
        except CountnetError as e:
            raise WorkflowError(f"config: dataset {name!r}: {e}") from None
    return specs


DATASETS = _dataset_specs()


def _data_path(entry):
    """A generated dataset's name -> datasets/<name>; anything else is a folder path."""
    data = str(entry["data"])
    return f"datasets/{data}" if data in DATASETS else data


def _experiments():
    """Experiments whose data exists or will be generated; absent optional sets are
    skipped with a note, absent required ones stop the workflow before any job."""
    out = {}
    for name, entry in config.get("experiments", {}).items():
        path = _data_path(entry)
        if str(entry["data"]) not in DATASETS and not Path(path).is_dir():
            if entry.get("optional", False):
                if PLAN:  # job subprocesses re-read this file
                    print(f"note: experiment {name!r} skipped: optional data {path} is absent",
                          file=sys.stderr)
                continue
            raise WorkflowError(f"config: experiment {name!r}: data folder {path} does not exist")
        out[name] = entry
    return out


EXPERIMENTS = _experiments()


def _probes():
    """experiments' probes: -> {exp: {probe: dataset name}}, each probe a DatasetSpec added
    to DATASETS (generated as any other set): the experiment's training set's options, then
    probe_defaults:, then the probe's own, named <training set>-<probe>."""
    defaults = config.get("probe_defaults", {})
    out = {}
    for exp, entry in EXPERIMENTS.items():
        if not entry.get("probes"):
            continue
        data = str(entry["data"])
        if data not in DATASETS:
            raise WorkflowError(f"config: experiment {exp!r}: probes need a dataset generated "
                                f"from datasets:, not the folder {data}")
        base = DATASETS[data].to_dict()
        out[exp] = {}
        for probe, own in entry["probes"].items():
            name = f"{data}-{probe}"
            # "range" is the config's word for counts (DatasetSpec.from_dict)
            extra = [{("counts" if k == "range" else k): v for k, v in d.items()}
                     for d in (defaults, own)]
            opts = {**base, **extra[0], **extra[1], "name": name}
            try:
                spec = DatasetSpec.from_dict(opts, check_layouts=PLAN)
            except CountnetError as e:
                raise WorkflowError(f"config: experiment {exp!r}: probe {probe!r}: {e}") from None
            if name in DATASETS and DATASETS[name] != spec:
                raise WorkflowError(f"config: experiment {exp!r}: probe {probe!r}'s set {name} "
                                    "is also a different dataset in datasets:; rename one")
            DATASETS[name] = spec
            out[exp][probe] = name
    return out


PROBES = _probes()
# the counting sets the classical counter scores: every generated set an experiment trains
# or is probed on (a folder of the user's own is not a counting set)
COUNTING_SETS = sorted(
    {str(e["data"]) for e in EXPERIMENTS.values() if str(e["data"]) in DATASETS}
    | {name for probes in PROBES.values() for name in probes.values()}
)

def _pretrained(arch, wanted):
    """'auto' -> ImageNet weights when the torch hub cache holds them, else from scratch,
    with a note the report shows."""
    if wanted != "auto" or arch in SCRATCH_ONLY:
        return bool(wanted) and arch not in SCRATCH_ONLY, None
    from countnet_classify.hub import cached_weights_path  # no torch: read in every job

    path = cached_weights_path(arch)
    if path.is_file():
        return True, None
    return False, (
        f"No ImageNet weights for {arch} in the torch hub cache ({path}): trained from "
        "scratch. Add them with `countnet weights import FILE` to fine-tune instead."
    )


SWEEP_KEYS = ("data", "params", "seeds", "grid", "optional")


def _join_notes(*notes):
    return " ".join(n.strip() for n in notes if n) or None


def _sweeps():
    """config sweeps: -> Sweep models (countnet_classify.experiments.sweep, as `countnet sweep`), each
    into runs/<name>/; train: options first, the sweep's own over them."""
    import dataclasses

    from countnet_classify.experiments.sweep.checks import check_runs
    from countnet_classify.experiments.sweep.spec import Sweep

    out = {}
    for name, entry in config.get("sweeps", {}).items():
        if name in EXPERIMENTS:
            raise WorkflowError(f"config: sweep {name!r} has an experiment's name: rename one")
        path = _data_path(entry)
        if str(entry["data"]) not in DATASETS and not Path(path).is_dir():
            if entry.get("optional", False):
                continue
            raise WorkflowError(f"config: sweep {name!r}: data folder {path} does not exist")
        swept = entry["params"]
        # train: holds defaults: its seed is one run's (a sweep runs seeds 0..seeds-1) and
        # the options this sweep varies are the sweep's to set
        defaults = {k: v for k, v in config.get("train", {}).items()
                    if k != "seed" and k not in swept}
        own = {k: v for k, v in entry.items() if k not in SWEEP_KEYS}
        opts = {**defaults, **own}
        if opts.get("transforms") == "select" and "transforms" not in swept:
            if own.get("transforms") == "select":
                raise WorkflowError(f"config: sweep {name!r}: transforms: select is for "
                                    "experiments; name a preset or sweep over presets")
            preset = config.get("select_transforms", {}).get("default", "dihedral")
            opts["transforms"] = preset  # the selection runs per experiment, not per sweep
            opts["note"] = _join_notes(opts.get("note"), "train: transforms: select applies to "
                                       f"experiments; this sweep uses the default preset, {preset}.")
        if "pretrained" not in swept and opts.get("pretrained", "auto") == "auto":
            # every arch the sweep trains from the same start: ImageNet weights only when
            # the cache holds them for all of them (one change at a time)
            archs = swept.get("arch") or [opts.get("arch", "resnet34")]
            verdicts = [_pretrained(a, "auto") for a in archs if a not in SCRATCH_ONLY]
            opts["pretrained"] = bool(verdicts) and all(ok for ok, _ in verdicts)
            missing = [note for ok, note in verdicts if not ok]
            if missing:
                opts["note"] = _join_notes(opts.get("note"), missing[0])
        base = {**opts, "data": path, "quiet": True}
        params = tuple((k, tuple(v if isinstance(v, list) else [v])) for k, v in swept.items())
        try:
            out[name] = Sweep(base, params, f"runs/{name}", seeds=entry.get("seeds", 3),
                              grid=entry.get("grid", False))
            if PLAN:  # a bad value stops the plan, not a job midway
                # where jobs run is not where Snakemake plans (a cluster's login node):
                # device and precision are the job's to check
                here = [dataclasses.replace(s, device="cpu", precision="fp32")
                        for s in out[name].specs()]
                # the network's checks need torch (~10 s of every `snakemake` call):
                # only when the sweep varies what they check
                check_runs(here, weights=False, model=bool({"arch", "size"} & set(swept)))
        except CountnetError as e:
            raise WorkflowError(f"config: sweep {name!r}: {e}") from None
    return out


SWEEPS = _sweeps()
# (sweep, run folder name) -> that run's RunSpec
SWEEP_RUNS = {(name, s.name): s for name, sw in SWEEPS.items() for s in sw.specs()}


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


# runs/{exp} must not swallow runs/report.html or runs/select-transforms/..., nor
# runs/{sweep}/{run} a sweep's summary.csv
wildcard_constraints:
    exp=_alternatives(EXPERIMENTS),
    name=_alternatives(DATASETS),
    sweep=_alternatives(SWEEPS),
    run=_alternatives(sorted({run for _, run in SWEEP_RUNS})),


def run_spec(exp, **overrides):
    """The RunSpec of an experiment: train defaults, then the experiment's own options."""
    from countnet_classify.spec import RunSpec

    entry = {k: v for k, v in EXPERIMENTS[exp].items() if k not in ("data", "optional", "probes")}
    # The overrides (select-transforms' budget) win, and are merged before `pretrained: auto`
    # is decided: for the arch that will run, whose weights the cache may or may not hold.
    opts = {**config.get("train", {}), **entry, **overrides}
    pretrained, note = _pretrained(opts.get("arch", "resnet34"), opts.pop("pretrained", "auto"))
    if opts.get("transforms", "select") == "select":
        opts["transforms"] = f"runs/select-transforms/{exp}.json"
    fields = dict(data=_data_path(EXPERIMENTS[exp]), name=exp, runs_dir="runs", quiet=True,
                  pretrained=pretrained, note=opts.pop("note", None) or note)
    try:
        return RunSpec.from_dict({**opts, **fields})
    except CountnetError as e:
        raise WorkflowError(f"config: experiment {exp!r}: {e}") from None


def selection_spec(exp):
    """The RunSpec each augmentation preset is tried with: the experiment's, with
    select_transforms:'s budget."""
    budget = config.get("select_transforms", {})
    opts = {k: v for k, v in budget.items() if k not in ("candidates", "default")}
    return run_spec(exp, transforms="none", **opts)


def recorded(spec):
    """The options of a run that decide its result, as plain data: Snakemake records builtin
    params only, and reruns a job when they change. Where it runs and how it reports
    (device, workers, loader, quiet, note) do not rerun it."""
    return _deciding(spec.to_dict())


def _deciding(options):
    """``options`` without those that do not change a result (config.RESUME_FREE)."""
    from countnet_classify.spec import RESUME_FREE

    return {k: v for k, v in options.items() if k not in RESUME_FREE}


def sweep_run_spec(sweep, run):
    """A sweep run's RunSpec; force: Snakemake owns (and has cleared) the output folder."""
    import dataclasses

    return dataclasses.replace(SWEEP_RUNS[(sweep, run)], force=True)


def recorded_sweep(sweep):
    """A sweep's plan as plain data, without what does not change results (see recorded)."""
    plan = sweep.to_dict()
    plan["base"] = _deciding(plan["base"])
    return plan


def selects_transforms(exp):
    return EXPERIMENTS[exp].get("transforms", config.get("train", {}).get("transforms", "select")) == "select"


def data_input(exp):
    """Generated datasets are rule outputs (so gen runs first); user folders are plain inputs."""
    return _data_path(EXPERIMENTS[exp])


def job_gpus(spec):
    """GPUs a training job asks for (the `gpu` resource, which the SLURM profile requests
    with --gpus): its own `gpus` when it trains data-parallel on GPUs, else the config's
    `gpu`."""
    if spec.gpus > 1 and spec.device != "cpu":
        return spec.gpus
    return int(config.get("gpu", 0))


def all_cores(cluster_default=8):
    """A job's threads: every core Snakemake was given when it runs jobs here (--cores, the
    default profile's `all`); on a cluster executor there is no such total (Snakemake
    raises on workflow.cores), so `cluster_default`, which the profile's set-threads
    overrides per rule."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return cluster_default
    # Inside a SLURM job (the executor's job step runs Snakemake with --cores all), the
    # allocation, not the node: a cluster without CPU confinement would show every core.
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() else cores


# Images in a set that one process writes, or counts classically, in about a second: such a
# job takes one core, so two run side by side instead of each taking every core in turn
# (the probe sets: most of the workflow's jobs, mostly start-up; BENCHMARKS.md, "The main job").
SMALL_SET = 2000


def set_threads(name):
    """A gen or baseline job's threads: one for a small generated set, else every core."""
    spec = DATASETS.get(name)
    return 1 if spec is not None and spec.n_images <= SMALL_SET else all_cores()


# Every job is a shell command (countnet.jobs), run by the interpreter running Snakemake,
# whatever PATH says; named through the environment so that the rules' code, which
# Snakemake records (and reruns a job when it changes), names no path of this machine.
os.environ["COUNTNET_PYTHON"] = sys.executable
