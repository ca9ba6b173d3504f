# Stage 2: augmentation presets tried on a short, equal budget -> runs/select-transforms/<exp>.json


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
        spec=lambda wc: selection_spec(wc.exp),
        options=lambda wc: recorded(selection_spec(wc.exp)),  # see rule train
        candidates=list(config.get("select_transforms", {}).get("candidates", ())),
        default=config.get("select_transforms", {}).get("default", "dihedral"),
    run:
        from countnet_classify.experiments.select import select_transforms

        training_job(threads)
        kw = {"candidates": params.candidates} if params.candidates else {}
        kw["default"] = params.default
        call_logged(log[0], select_transforms, params.spec, output[0], **kw)
