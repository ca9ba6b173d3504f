# Sweeps: one job per (point, seed) -> runs/<sweep>/<point>-seed<k>/ (countnet_classify.job,
# as `countnet sweep` runs them), then the sweep's summaries
# (countnet_classify.experiments.sweep). On a cluster the runs fan out as separate jobs; locally
# they run one after the other.


rule sweep_run:
    input:
        data=lambda wc: SWEEPS[wc.sweep].base["data"],
    output:
        directory("runs/{sweep}/{run}"),
    log:
        "logs/sweep/{sweep}/{run}.log",
    threads: all_cores()
    resources:
        mem_mb=8000,
        gpu=lambda wc: job_gpus(sweep_run_spec(wc.sweep, wc.run)),
    params:
        options=lambda wc: recorded(sweep_run_spec(wc.sweep, wc.run)),  # see rule train
        request=lambda wc, threads: Request(
            job="train", spec=sweep_run_spec(wc.sweep, wc.run).to_dict(), threads=threads
        ),
    shell:
        # SIGTERM stops it at a safe point, and its rerun resumes (rule train)
        job_command("countnet_classify.job")


rule sweep_summary:
    input:
        lambda wc: [f"runs/{wc.sweep}/{s.name}" for s in SWEEPS[wc.sweep].specs()],
    output:
        "runs/{sweep}/sweep.json",
        "runs/{sweep}/sweep.csv",
        "runs/{sweep}/summary.csv",
        "runs/{sweep}/sweep.md",
        "runs/{sweep}/sweep_error.png",
        "runs/{sweep}/sweep_curves.png",
    log:
        "logs/sweep/{sweep}.log",
    threads: 1
    resources:
        mem_mb=1000,
    params:
        # rewritten when the plan changes (points, seeds), not when how runs go does
        plan=lambda wc: recorded_sweep(SWEEPS[wc.sweep]),
        request=lambda wc: Request(
            job="sweep_summary", sweep=SWEEPS[wc.sweep].to_dict(), out=SWEEPS[wc.sweep].out
        ),
    shell:
        job_command("countnet_classify.job")
