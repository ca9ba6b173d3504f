# Stage 4: every run in one page -> runs/report.html and runs/report.md.


rule report:
    input:
        expand("runs/{exp}", exp=EXPERIMENTS),
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

        md, page = write_report(list(input), "runs")
        Path(log[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(log[0]).write_text(f"wrote {page} and {md} for {len(input)} run(s)\n")
