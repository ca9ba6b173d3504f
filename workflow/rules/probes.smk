# Stage 4: what did it learn? Each run scored on its probes, sets shifted in one generator
# parameter -> runs/probes/<exp>/<probe>/ (countnet_classify.scoring, as `countnet evaluate`),
# and the classical counter on every counting set -> runs/baselines/<set>/ (`countnet baseline`).


rule probe:
    input:
        run="runs/{probed}",
        data=lambda wc: [f"datasets/{name}" for name in PROBES[wc.probed].values()],
    output:
        directory("runs/probes/{probed}"),
    log:
        "logs/probe/{probed}.log",
    threads: all_cores()
    resources:
        mem_mb=3000,
    params:
        probes=lambda wc: dict(PROBES[wc.probed]),
    run:
        from countnet_classify.scoring import evaluate_into

        training_job(threads)  # threads for the forward passes, as a training job's
        sets = {probe: f"datasets/{name}" for probe, name in params.probes.items()}
        call_logged(log[0], evaluate_into, input.run, sets, output[0])


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
    run:
        from countnet_classify.classical import baseline_into

        call_logged(log[0], baseline_into, input[0], output[0], workers=threads)
