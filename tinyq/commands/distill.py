"""`tinyq distill`: the command-line side of tinyq.experiments.distillation."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.options import (check_output_dir, data_options, finite_float, no_progress_option, out_option,
                                    positive_float, positive_int, seed_option)
from tinyq.experiments.distillation import ALPHAS, SUMMARY_COLUMNS, TEMPERATURES


def alpha_value(text: str) -> float:
    """0 <= alpha <= 1: the weight of the soft term."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


@command("distill", help="distill the digits CNN into a narrow MLP: sweep T and alpha over seeds, vs. scratch",
         args=[*data_options(),
               arg("--temperatures", type=positive_float, nargs="+", default=list(TEMPERATURES)),
               arg("--alphas", type=alpha_value, nargs="+", default=list(ALPHAS)),
               arg("--seeds", type=positive_int, default=3, help="number of student seeds per configuration"),
               arg("--hidden", type=positive_int, default=16, help="the student MLP's hidden width"),
               arg("--student-epochs", type=positive_int, default=None),
               arg("--teacher-epochs", type=positive_int, default=None),
               arg("--teacher-width", type=positive_int, default=16), arg("--lr", type=positive_float, default=0.05),
               arg("--limit", type=positive_int, default=None, help="use only the first N train and test samples"),
               seed_option(), out_option("runs/distill", help="folder for distill.json, .csv and .png"),
               no_progress_option()])
def distill_command(args) -> int:
    """Train the teacher once, then every student configuration over --seeds seeds; print mean ± std of the
    test accuracy per configuration and whether its gain over the scratch baseline exceeds 2 standard errors;
    save the per-seed records (JSON), the summary (CSV) and the plot."""
    from tinyq import records as rec
    from tinyq.experiments.distillation import plot, run, summarize
    from tinyq.experiments.plotting import save_figure

    check_output_dir(args.out)
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
