# Stage 1: synthetic datasets -> datasets/<name>/ (countnet_gen.writer.generate, as `countnet gen`).


rule gen:
    output:
        directory("datasets/{name}"),
    log:
        "logs/gen/{name}.log",
    threads: workflow.cores
    resources:
        mem_mb=2000,
    params:
        # Plain data, not the DatasetSpec: Snakemake records (and compares, for its params
        # rerun trigger) only builtin values, so a changed parameter regenerates the set.
        spec=lambda wc: DATASETS[wc.name].to_dict(),
        # A generator fix that changes pixels bumps this, and Snakemake's params trigger
        # regenerates the sets made before it.
        pixels_version=PIXELS_VERSION,
    run:
        from countnet_gen.spec import DatasetSpec
        from countnet_gen.writer import generate_logged

        spec = DatasetSpec.from_dict(params.spec)
        generate_logged(spec, output[0], workers=threads, log=log[0])
