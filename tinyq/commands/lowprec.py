"""`tinyq lowprec`: the command-line side of tinyq.experiments.fixed_point_training."""
from __future__ import annotations

import time

from tinyq.cli import arg, command
from tinyq.commands.options import (OptionError, check_output_dir, data_options, int_in, no_progress_option,
                                    nonnegative_int, out_option, positive_float, positive_int, run_folder_options,
                                    seed_option)
from tinyq.commands.parallel_options import parallel_args
from tinyq.experiments.fixed_point_training import MAX_WORD_BITS, ROUNDINGS, configurations, plot, run

LOWPREC_FILES = ("run.json", "lowprec.json", "lowprec.csv", "lowprec.png")


@command("lowprec", help="train an MLP in fixed point: accuracy vs fraction bits, nearest vs stochastic",
         args=[arg("--word-bits", type=int_in(2, MAX_WORD_BITS), nargs="+", default=[16, 12, 8],
                   help=f"word lengths w (2..{MAX_WORD_BITS})"),
               arg("--frac-bits", type=nonnegative_int, nargs="+", default=None,
                   help="fraction lengths n (default: 4..14 where n <= w - 2)"),
               arg("--epochs", type=positive_int, default=10), arg("--lr", type=positive_float, default=0.1),
               arg("--batch-size", type=positive_int, default=32), arg("--hidden", type=positive_int, default=128),
               arg("--activation-rounding", choices=ROUNDINGS, default=None,
                   help="rounding of activations and errors (default: the same as the update's)"),
               *data_options(), seed_option(),
               out_option("runs/lowprec", help="folder for lowprec.json, .csv and .png"),
               *run_folder_options(resume=False), no_progress_option(), *parallel_args()])
def lowprec_command(args) -> int:
    """Gupta et al. 2015 on the 8x8 digits (or --dataset): train the MLP with weights, activations and errors
    in fixed point Q(w, n) for each word length w and fraction length n, with round-to-nearest-even vs
    stochastic rounding, next to a float32 run; print the table, save JSON/CSV and the plot."""
    from tinyq import records as rec
    from tinyq.experiments.plotting import save_figure
    from tinyq.parallel import make_executor
    from tinyq.run_folder import RunFolder

    start = time.perf_counter()
    try:
        configurations(args.word_bits, args.frac_bits)
    except ValueError as error:
        option = "--frac-bits" if str(error).startswith("frac_bits") or args.frac_bits else "--word-bits"
        raise OptionError(option, str(error).replace("word_bits", "--word-bits").replace("frac_bits", "--frac-bits")) \
            from None
    check_output_dir(args.out)
    settings = {k: v for k, v in vars(args).items()
                if not k.startswith("_") and k not in ("overwrite", "out", "jobs", "scheduler")}
    with make_executor(args.jobs, args.scheduler) as executor:      # an unreachable scheduler fails here, first
        folder = RunFolder(args.out, "lowprec", settings, outputs=LOWPREC_FILES)
        folder.open(overwrite=args.overwrite)
        results = run(args.word_bits, args.frac_bits, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      hidden=args.hidden, seed=args.seed, activation_rounding=args.activation_rounding,
                      dataset=args.dataset, progress=False if args.no_progress else None, executor=executor)
    columns = ["word_bits", "frac_bits", "format", "rounding", "test_accuracy", "train_loss", "updates_applied",
               "outputs_saturated"]
    print(rec.format_table(results, columns, title=f"fixed-point training on {args.dataset}, seed {args.seed}"))
    figure = plot(results)
    folder.commit({"lowprec.json": lambda tmp: rec.save_json(results, tmp, metadata=settings),
                   "lowprec.csv": lambda tmp: rec.save_csv(results, tmp),
                   "lowprec.png": lambda tmp: save_figure(figure, tmp, format="png")},
                  status="finished", info={"progress": "finished"})
    print(f"wrote {folder.path / 'lowprec.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
