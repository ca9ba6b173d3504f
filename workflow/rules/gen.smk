# Stage 1: synthetic datasets -> datasets/<name>/ (countnet_gen.job, as `countnet gen`).


rule gen:
    output:
        directory("datasets/{name}"),
    log:
        "logs/gen/{name}.log",
    threads: lambda wc: set_threads(wc.name)
    resources:
        mem_mb=2000,
    params:
        # Snakemake records (and compares, for its params rerun trigger) only builtin values:
        # this plain copy of the DatasetSpec makes a changed parameter regenerate the set.
        options=lambda wc: DATASETS[wc.name].to_dict(),
        # A generator fix that changes pixels bumps this, and Snakemake's params trigger
        # regenerates the sets made before it.
        pixels_version=PIXELS_VERSION,
        request=lambda wc, output, threads: Request(
            spec=DATASETS[wc.name].to_dict(), out=output[0], workers=threads
        ),
    shell:
        job_command("countnet_gen.job")
