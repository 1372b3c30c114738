"""`tinyq distill`: the command-line side of tinyq.experiments.distillation."""
from __future__ import annotations

import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.experiments.distillation import ALPHAS, SUMMARY_COLUMNS, TEMPERATURES


@command("distill", help="distill the digits CNN into a narrow MLP: sweep T and alpha over seeds, vs. scratch",
         args=[arg("--dataset", choices=["digits", "mnist", "fashion"], default="digits"),
               arg("--temperatures", type=float, nargs="+", default=list(TEMPERATURES)),
               arg("--alphas", type=float, nargs="+", default=list(ALPHAS)),
               arg("--seeds", type=int, default=3, help="number of student seeds per configuration"),
               arg("--hidden", type=int, default=16, help="the student MLP's hidden width"),
               arg("--student-epochs", type=int, default=None), arg("--teacher-epochs", type=int, default=None),
               arg("--teacher-width", type=int, default=16), arg("--lr", type=float, default=0.05),
               arg("--limit", type=int, default=None, help="use only the first N train and test samples"),
               arg("--seed", type=int, default=0),
               arg("--out", default="runs/distill", metavar="DIR", help="folder for distill.json, .csv and .png"),
               arg("--no-progress", action="store_true")])
def distill_command(args) -> int:
    """Train the teacher once, then every student configuration over --seeds seeds; print mean ± std of the
    test accuracy per configuration and whether its gain over the scratch baseline exceeds 2 standard errors;
    save the per-seed records (JSON), the summary (CSV) and the plot."""
    from tinyq import records as rec
    from tinyq.experiments.distillation import plot, run, summarize
    from tinyq.experiments.plotting import save_figure

    for name, value in (("--seeds", args.seeds), ("--hidden", args.hidden), ("--teacher-width", args.teacher_width),
                        ("--student-epochs", args.student_epochs or 1), ("--teacher-epochs", args.teacher_epochs or 1)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    start = time.perf_counter()
    records = run(args.dataset, seeds=tuple(range(args.seeds)), temperatures=args.temperatures, alphas=args.alphas,
                  hidden=args.hidden, student_epochs=args.student_epochs, teacher_epochs=args.teacher_epochs,
                  teacher_width=args.teacher_width, lr=args.lr, seed=args.seed, limit=args.limit,
                  progress=False if args.no_progress else None)
    summary = summarize(records)
    print(f"teacher test accuracy {records[0]['teacher_accuracy']:.4f} ({records[0]['teacher_parameters']} "
          f"parameters); student {records[0]['student_parameters']} parameters")
    print(rec.format_table(summary, SUMMARY_COLUMNS, title=f"distillation, seed {args.seed}, {args.seeds} student "
                                                           "seeds (above_noise: gain > 2 standard errors)"))
    out = Path(args.out)
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    rec.save_json({"records": records, "summary": summary}, out / "distill.json", metadata=metadata)
    rec.save_csv(summary, out / "distill.csv")
    save_figure(plot(summary), out / "distill.png")
    print(f"wrote {out / 'distill.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
