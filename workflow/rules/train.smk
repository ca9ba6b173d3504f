# Stage 3: one training run per experiment -> runs/<exp>/ (countnet_classify.job, as
# `countnet train`). SIGTERM stops a job at a safe point, and its rerun resumes it.


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
        # What Snakemake records and compares (builtin values only): see rule gen
        options=lambda wc: recorded(run_spec(wc.exp, force=True)),
        request=lambda wc, threads: Request(
            job="train", spec=run_spec(wc.exp, force=True).to_dict(), threads=threads
        ),
    shell:
        job_command("countnet_classify.job")
