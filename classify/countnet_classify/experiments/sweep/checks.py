"""A sweep's run folders: which have finished, and the checks made before any run starts
(every run's options, the ImageNet weights, finished runs that are another sweep's)."""

from __future__ import annotations

from pathlib import Path

from countnet.errors import CountnetError
from countnet_classify import run_folder
from countnet_classify.spec import RunSpec, check_options


def completed_config(spec: RunSpec) -> dict | None:
    """The run's config.yaml if the run finished, else None."""
    if not (spec.run_dir / run_folder.CONFIG).is_file():
        return None
    cfg = run_folder.read_config(spec.run_dir)
    return cfg if cfg.get("status") == "complete" else None


def finished(spec: RunSpec) -> bool:
    return completed_config(spec) is not None


def check_runs(specs: list[RunSpec], *, weights: bool = True, model: bool = True) -> None:
    """Every run's options checked before the first starts (prepare.check_spec, once per
    distinct setting), and (``weights``) the ImageNet weights each pretrained arch needs,
    fetched into the cache now if they are missing: offline, one line instead of a sweep
    stopped midway. ``model=False`` leaves out the checks that need torch (device,
    precision, a --size the network cannot take): the Snakefile's parse, in every
    `snakemake` call, is then seconds shorter."""
    seen = set()
    where = ("seed", "name", "runs_dir")  # what differs between runs of one setting
    for spec in specs:
        key = tuple(sorted((k, repr(v)) for k, v in spec.resume_key().items() if k not in where))
        if key not in seen:
            seen.add(key)
            if model:
                # lazy: torch stays out of the Snakefile's parse, which imports this module
                from countnet_classify.prepare import check_spec

                check_spec(spec)
            else:
                check_options(spec)
    if weights:
        # lazy: torch stays out of the Snakefile's parse, which imports this module
        from countnet_classify.weights import imagenet_state_dict

        for arch, file in sorted({(s.arch, s.weights or "") for s in specs if s.uses_pretrained}):
            imagenet_state_dict(arch, file or None)


def check_finished_run(spec: RunSpec, fingerprint: str | None = None) -> None:
    """Refuse a finished run folder of this name trained with other options, or (given
    the dataset's ``fingerprint``) on files that have changed since."""
    saved = completed_config(spec)
    if saved is None:
        return
    diff = spec.resume_diff(saved.get("resume_key", {}))
    if diff:
        raise CountnetError(
            f"run {spec.run_dir} was trained with other options ({', '.join(diff)}): this is "
            "another sweep's folder; choose another --out/--name or delete that run"
        )
    changed = fingerprint and saved.get("data", {}).get("fingerprint") != fingerprint
    if fingerprint and spec.task == "regression":  # its unseen-count MAE comes from test/
        # lazy: torch stays out of the Snakefile's parse, which imports this module
        from countnet_classify.screen import fingerprint_test_split

        test = fingerprint_test_split(Path(spec.data))
        changed = changed or saved["data"].get("test_fingerprint") != test
    if changed:
        raise CountnetError(
            f"run {spec.run_dir} was trained on other files (those under {spec.data} changed "
            "since): delete the sweep's runs to retrain them, or choose another --out/--name"
        )
