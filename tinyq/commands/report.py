"""`tinyq report`: the command-line side of tinyq.experiments.report."""
from __future__ import annotations

import os
import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.distill import alpha_value
from tinyq.commands.options import (check_output_dir, data_options, fraction, no_progress_option, out_option,
                                    positive_float, positive_int, seed_option)


@command("report", help="end-to-end compression: teacher -> distilled student -> pruned -> shared / int8 / int4 "
                        "integer-only; accuracy, bytes, latency, ratio",
         args=[*data_options(),
               arg("--teacher-epochs", type=positive_int, default=None),
               arg("--student-epochs", type=positive_int, default=None),
               arg("--hidden", type=positive_int, default=32, help="the student MLP's hidden width"),
               arg("--temperature", type=positive_float, default=2.0), arg("--alpha", type=alpha_value, default=0.5),
               arg("--sparsity", type=fraction, default=0.8, help="final AGP sparsity of the student's weights"),
               arg("--clusters", type=positive_int, default=16, help="k-means codebook size for weight sharing"),
               arg("--batch-size", type=positive_int, default=256, help="batch whose forward pass is timed"),
               arg("--limit", type=positive_int, default=None, help="use only the first N train and test samples"),
               seed_option(), out_option("runs/report", help="folder for report.json, .csv and .png"),
               no_progress_option()])
def report_command(args) -> int:
    """Run the whole pipeline once and print, per stage, test accuracy, stored bytes, compression ratios and
    the median latency of one batch; every number is computed in this run. Save JSON/CSV and the
    accuracy-vs-size plot with its Pareto front."""
    from tinyq import records as rec
    from tinyq.experiments.plotting import save_figure
    from tinyq.experiments.report import COLUMNS, plot, run

    check_output_dir(args.out)
    start = time.perf_counter()
    records = run(args.dataset, seed=args.seed, teacher_epochs=args.teacher_epochs,
                  student_epochs=args.student_epochs, hidden=args.hidden, temperature=args.temperature,
                  alpha=args.alpha, sparsity=args.sparsity, clusters=args.clusters, batch_size=args.batch_size,
                  limit=args.limit, progress=False if args.no_progress else None)
    threads = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(rec.format_table(records, COLUMNS, title=f"compression report, {args.dataset}, seed {args.seed}; latency: "
                                                   f"median of 7 forward passes over {records[0]['batch_size']} "
                                                   f"images; load average {load:.1f}"))
    if threads["OPENBLAS_NUM_THREADS"] == "unset":
        print("note: BLAS threads unset; on a busy machine multi-threaded BLAS waits for time slices and small "
              "float GEMMs look slow: run with OPENBLAS_NUM_THREADS=1 to compare engines on one thread")
    out = Path(args.out)
    metadata = {**{k: v for k, v in vars(args).items() if not k.startswith("_")}, "threads": threads,
                "load_average": load, "cpu_count": os.cpu_count()}
    rec.save_json(records, out / "report.json", metadata=metadata)
    rec.save_csv(records, out / "report.csv")
    save_figure(plot(records), out / "report.png")
    print(f"wrote {out / 'report.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
