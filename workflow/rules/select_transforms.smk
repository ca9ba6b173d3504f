# Stage 2: augmentation presets tried on a short, equal budget -> runs/select-transforms/<exp>.json

SELECT_CANDIDATES = list(config.get("select_transforms", {}).get("candidates", ()))
SELECT_DEFAULT = config.get("select_transforms", {}).get("default", "dihedral")


rule select_transforms:
    input:
        data=lambda wc: data_input(wc.exp),
    output:
        "runs/select-transforms/{exp}.json",
    log:
        "logs/select_transforms/{exp}.log",
    threads: all_cores()
    resources:
        mem_mb=6000,
        gpu=lambda wc: job_gpus(selection_spec(wc.exp)),
    params:
        options=lambda wc: recorded(selection_spec(wc.exp)),  # see rule train
        candidates=SELECT_CANDIDATES,
        default=SELECT_DEFAULT,
        request=lambda wc, output, threads: Request(
            job="select",
            spec=selection_spec(wc.exp).to_dict(),
            out=output[0],
            candidates=SELECT_CANDIDATES,
            default=SELECT_DEFAULT,
            threads=threads,
        ),
    shell:
        job_command("countnet_classify.job")
