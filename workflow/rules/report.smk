# Stage 5: every run in one page -> runs/report.html and runs/report.md.


rule report:
    input:
        runs=expand("runs/{exp}", exp=EXPERIMENTS),
        sweeps=expand("runs/{sweep}/summary.csv", sweep=SWEEPS),
        probes=expand("runs/probes/{exp}", exp=PROBES),
        baselines=expand("runs/baselines/{name}", name=COUNTING_SETS),
    output:
        html="runs/report.html",
        md="runs/report.md",
    log:
        "logs/report.log",
    threads: 1
    resources:
        mem_mb=1000,
    params:
        request=lambda wc, input: Request(
            job="report",
            runs=list(input.runs),
            sweeps=[str(Path(p).parent) for p in input.sweeps],
            probes=list(input.probes),
            baselines=list(input.baselines),
            out="runs",
        ),
    shell:
        job_command("countnet_classify.job")
