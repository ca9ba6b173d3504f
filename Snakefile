# countnet workflow: gen -> select_transforms -> train (and sweeps) -> probes -> report.
# Run: `uv run snakemake all` (cores etc. come from profiles/default/config.yaml).
# Scale: config/config.yaml (default, 2-core CPU, offline) or --configfile config/full.yaml.

# The default config only when no --configfile is given: a user's config means exactly what
# it says (Snakemake would merge it over config/config.yaml, so the default's experiments
# and options would run beside and under the user's). --config KEY=VALUE still applies on
# top of whichever config is used.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/gen.smk"
include: "workflow/rules/select_transforms.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/report.smk"


# On a cluster these run where Snakemake runs: the target, and a report that only reads the
# run folders (seconds of work, not worth a queue wait).
localrules:
    all,
    report,
    sweep_summary,


rule all:
    input:
        expand("datasets/{name}", name=DATASETS),
        # Runs are targets themselves, so a deleted run folder is rebuilt (with the report).
        expand("runs/{exp}", exp=EXPERIMENTS),
        expand("runs/{sweep}/summary.csv", sweep=SWEEPS),
        expand("runs/probes/{exp}", exp=PROBES),
        expand("runs/baselines/{name}", name=COUNTING_SETS),
        "runs/report.html" if EXPERIMENTS or SWEEPS else [],
    default_target: True
