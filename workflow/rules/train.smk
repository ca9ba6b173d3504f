# Stage 3: one training run per experiment -> runs/<exp>/ (countnet_classify.train.train).


rule train:
    input:
        data=lambda wc: data_input(wc.exp),
        transforms=lambda wc: (
            [f"runs/select-transforms/{wc.exp}.json"] if selects_transforms(wc.exp) else []
        ),
    output:
        directory("runs/{exp}"),
    log:
        "logs/train/{exp}.log",
    threads: all_cores()
    resources:
        mem_mb=8000,
        gpu=lambda wc: job_gpus(run_spec(wc.exp)),
    params:
        spec=lambda wc: run_spec(wc.exp, force=True),
        # What Snakemake records and compares (builtin values only): see rule gen
        options=lambda wc: recorded(run_spec(wc.exp, force=True)),
    run:
        # in a process of its own: SIGTERM stops it at a safe point, and its rerun resumes
        from countnet_classify.job import run_job

        run_job(params.spec, threads, log[0])
