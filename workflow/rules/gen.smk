# Stage 1: synthetic datasets -> datasets/<name>/ (countnet_gen.writer.generate, as `countnet gen`).


rule gen:
    output:
        directory("datasets/{name}"),
    log:
        "logs/gen/{name}.log",
    threads: lambda wc: set_threads(wc.name)
    resources:
        mem_mb=2000,
    params:
        spec=lambda wc: DATASETS[wc.name],
        # Snakemake records (and compares, for its params rerun trigger) only builtin values,
        # not the DatasetSpec: this plain copy makes a changed parameter regenerate the set.
        options=lambda wc: DATASETS[wc.name].to_dict(),
        # A generator fix that changes pixels bumps this, and Snakemake's params trigger
        # regenerates the sets made before it.
        pixels_version=PIXELS_VERSION,
    run:
        from countnet_gen.writer import generate_logged

        generate_logged(params.spec, output[0], workers=threads, log=log[0])
