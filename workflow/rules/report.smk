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
    run:
        from countnet_classify.report import write_report

        folders = [*input.runs, *(str(Path(p).parent) for p in input.sweeps)]
        folders += [str(p) for d in input.probes for p in sorted(Path(d).iterdir()) if p.is_dir()]
        folders += list(input.baselines)
        md, page = write_report(folders, "runs")
        Path(log[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(log[0]).write_text(
            f"wrote {page} and {md} for {len(input.runs)} run(s), {len(input.sweeps)} sweep(s)\n"
        )
