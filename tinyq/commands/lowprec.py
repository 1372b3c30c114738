"""`tinyq lowprec`: the command-line side of tinyq.experiments.fixed_point_training."""
from __future__ import annotations

import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.parallel_options import parallel_args
from tinyq.experiments.fixed_point_training import ROUNDINGS, plot, run


@command("lowprec", help="train the digits MLP in fixed point: accuracy vs fraction bits, nearest vs stochastic",
         args=[arg("--word-bits", type=int, nargs="+", default=[16, 12, 8], help="word lengths w"),
               arg("--frac-bits", type=int, nargs="+", default=None,
                   help="fraction lengths n (default: 4..14 where n <= w - 2)"),
               arg("--epochs", type=int, default=10), arg("--lr", type=float, default=0.1),
               arg("--batch-size", type=int, default=32), arg("--hidden", type=int, default=128),
               arg("--activation-rounding", choices=ROUNDINGS, default=None,
                   help="rounding of activations and errors (default: the same as the update's)"),
               arg("--seed", type=int, default=0), arg("--out", default="runs/lowprec", metavar="DIR",
                                                        help="folder for lowprec.json, .csv and .png"),
               arg("--no-progress", action="store_true"), *parallel_args()])
def lowprec_command(args) -> int:
    """Gupta et al. 2015 on the 8x8 digits: train the MLP with weights, activations and errors in
    fixed point Q(w, n) for each word length w and fraction length n, with round-to-nearest-even vs
    stochastic rounding, next to a float32 run; print the table, save JSON/CSV and the plot."""
    from tinyq import records as rec
    from tinyq.experiments.plotting import save_figure

    from tinyq.parallel import make_executor

    start = time.perf_counter()
    with make_executor(args.jobs, args.scheduler) as executor:
        results = run(args.word_bits, args.frac_bits, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      hidden=args.hidden, seed=args.seed, activation_rounding=args.activation_rounding,
                      progress=False if args.no_progress else None, executor=executor)
    columns = ["word_bits", "frac_bits", "format", "rounding", "test_accuracy", "train_loss", "updates_applied",
               "outputs_saturated"]
    print(rec.format_table(results, columns, title=f"fixed-point training, seed {args.seed}"))
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    out = Path(args.out)
    rec.save_json(results, out / "lowprec.json", metadata=metadata)
    rec.save_csv(results, out / "lowprec.csv")
    save_figure(plot(results), out / "lowprec.png")
    print(f"wrote {out / 'lowprec.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
