# countnet workflow: gen -> (select_transforms -> train -> report, added stage by stage).
# Run: `uv run snakemake all` (cores etc. come from profiles/default/config.yaml).
# Scale: config/config.yaml (default, CPU-sized) or --configfile config/full.yaml.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/gen.smk"


rule all:
    input:
        expand("datasets/{name}", name=DATASETS),
    default_target: True
