# Stage 4: what did it learn? Each run scored on its probes, sets shifted in one generator
# parameter -> runs/probes/<exp>/<probe>/ (countnet_classify.scoring, as `countnet evaluate`),
# and the classical counter on every counting set -> runs/baselines/<set>/ (`countnet baseline`).
# Both through countnet_classify.job.


# One job scores every run on its probes: the forward passes take seconds a run, a process
# importing torch for each would take longer (BENCHMARKS.md, "The main job").
if PROBES:  # a rule needs an output

    rule probes:
        input:
            runs=expand("runs/{exp}", exp=PROBES),
            data=sorted({f"datasets/{name}" for probes in PROBES.values() for name in probes.values()}),
        output:
            [directory(f"runs/probes/{exp}") for exp in PROBES],
        log:
            "logs/probes.log",
        threads: all_cores()
        resources:
            mem_mb=3000,
        params:
            probes={exp: dict(probes) for exp, probes in PROBES.items()},
            request=lambda wc, threads: Request(
                job="probes",
                runs=[
                    {"run": f"runs/{exp}", "out": f"runs/probes/{exp}",
                     "sets": {probe: f"datasets/{name}" for probe, name in probes.items()}}
                    for exp, probes in PROBES.items()
                ],
                threads=threads,
            ),
        shell:
            job_command("countnet_classify.job")


rule baseline:
    input:
        "datasets/{name}",
    output:
        directory("runs/baselines/{name}"),
    log:
        "logs/baseline/{name}.log",
    threads: lambda wc: set_threads(wc.name)
    resources:
        mem_mb=1000,
    params:
        request=lambda wc, input, output, threads: Request(
            job="baseline", data=input[0], out=output[0], threads=threads
        ),
    shell:
        job_command("countnet_classify.job")
