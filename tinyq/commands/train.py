"""`tinyq train`: train one float model, with checkpoints and a history in a run folder."""
from __future__ import annotations

import os

from tinyq.cli import arg, command
from tinyq.commands.options import (OptionError, check_output_dir, data_options, fraction, no_progress_option, out_option,
                                    positive_float, positive_int, run_folder_options, seed_option)


@command("train", help="train a model on a dataset and print the results table and wall time",
         args=[arg("--model", choices=["mlp", "lenet", "convnet"], default="mlp", help="architecture"),
               *data_options(),
               arg("--epochs", type=positive_int, default=None,
                   help="epochs (default: per model, see tinyq.train.DEFAULTS)"),
               arg("--batch-size", type=positive_int, default=None, help="batch size (default: per model)"),
               arg("--lr", type=positive_float, default=None, help="peak learning rate of the cosine schedule"),
               arg("--val-fraction", type=fraction, default=0.1, help="share of the training split held out"),
               arg("--no-augment", action="store_true", help="no random 1-pixel shifts"),
               seed_option(),
               out_option(None, help="where best.npz, last.npz, history.json and run.json go "
                                     "(default: runs/<model>-<dataset>-seed<seed>)"),
               *run_folder_options(),
               no_progress_option()])
def train_command(args) -> int:
    """Train with SGD + momentum and a cosine schedule; print one line per epoch, the test accuracy of
    the last epoch and of the best-validation checkpoint, and the wall time. Same seed, same numbers.
    A folder that already holds a run is refused unless --resume (continue it) or --overwrite."""
    from tinyq.train import run

    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}-seed{args.seed}")
    check_output_dir(out)
    if args.resume and args.overwrite:
        raise OptionError("--resume", "and --overwrite exclude each other")
    run(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, augment=not args.no_augment, seed=args.seed, out=out,
        resume=args.resume, overwrite=args.overwrite, progress=False if args.no_progress else None)
    return 0
