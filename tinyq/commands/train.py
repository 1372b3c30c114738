"""`tinyq train`: train one float model, with checkpoints and a history."""
from __future__ import annotations

import os

from tinyq.cli import arg, command


@command("train", help="train a model on a dataset and print the results table and wall time",
         args=[arg("--model", choices=["mlp", "lenet", "convnet"], default="mlp", help="architecture"),
               arg("--dataset", choices=["digits", "mnist", "fashion"], default="digits",
                   help="digits ships with tinyq; mnist/fashion are downloaded once into $TINYQ_DATA"),
               arg("--epochs", type=int, default=None, help="epochs (default: per model, see tinyq.train.DEFAULTS)"),
               arg("--batch-size", type=int, default=None, help="batch size (default: per model)"),
               arg("--lr", type=float, default=None, help="peak learning rate of the cosine schedule"),
               arg("--val-fraction", type=float, default=0.1, help="share of the training split held out"),
               arg("--no-augment", action="store_true", help="no random 1-pixel shifts"),
               arg("--seed", type=int, default=0, help="seeds init, split, shuffling and augmentation"),
               arg("--out", default=None, metavar="DIR",
                   help="where best.npz, last.npz and history.json go (default: runs/<model>-<dataset>-seed<seed>)"),
               arg("--no-progress", action="store_true", help="no progress bars (they are off without a TTY)")])
def train_command(args) -> int:
    """Train with SGD + momentum and a cosine schedule; print one line per epoch, the test accuracy of
    the last epoch and of the best-validation checkpoint, and the wall time. Same seed, same numbers."""
    from tinyq.train import run

    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}-seed{args.seed}")
    run(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, augment=not args.no_augment, seed=args.seed, out=out,
        progress=False if args.no_progress else None)
    return 0
