"""`tinyq prune`: the command-line side of tinyq.experiments.pruning and tinyq.experiments.sharing."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.options import (check_output_dir, data_options, fraction, no_progress_option, out_option,
                                    positive_int, seed_option)


@command("prune", help="accuracy vs sparsity (one-shot/iterative/AGP; global/layer/random/structured), "
                       "sensitivity, shrink latency and the Deep-Compression table (prune -> share -> Huffman)",
         args=[*data_options(),
               arg("--model", default="mlp", choices=["mlp", "convnet", "lenet"]),
               arg("--sparsities", type=fraction, nargs="+", default=None, help="target sparsities in [0, 1)"),
               arg("--retrain-epochs", type=positive_int, default=None, help="retraining epochs per pruned model"),
               arg("--epochs", type=positive_int, default=None, help="float training epochs"),
               arg("--k", type=positive_int, default=16, help="centroids per layer for weight sharing"),
               arg("--compression-sparsity", type=fraction, default=0.9),
               arg("--skip-sweep", action="store_true", help="only sensitivity, shrink and the compression table"),
               out_option("runs/prune", help="folder for JSON, CSV and PNG"), seed_option(),
               no_progress_option()])
def prune_command(args):
    """Train a float model from --seed; print and save the pruning tables and plots and the compression table."""
    from tinyq.experiments import pruning, sharing
    from tinyq.experiments.plotting import line_plot, save_figure
    from tinyq.records import format_table, save_csv, save_json
    from tinyq.train import fast_mode

    progress = not args.no_progress and sys.stderr.isatty()
    sparsities = args.sparsities or list(pruning.SPARSITIES)
    check_output_dir(args.out)
    epochs = args.retrain_epochs or (4 if fast_mode() else pruning.RETRAIN_EPOCHS)
    if epochs < 1:
        raise ValueError(f"--retrain-epochs must be >= 1, got {epochs}")
    float_epochs = args.epochs or (8 if fast_mode() else pruning.FLOAT_EPOCHS)
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    started = time.perf_counter()

    model, train_set, test_set = pruning.train_float_model(args.dataset, args.model, args.seed, float_epochs)
    reference = pruning.evaluate(model, test_set)
    print(f"float {args.model} on {args.dataset}: test accuracy {reference:.4f} ({float_epochs} epochs)")
    if not args.skip_sweep:
        records = pruning.accuracy_vs_sparsity(model, train_set, test_set, sparsities, epochs=epochs,
                                               seed=args.seed, progress=progress)
        print(format_table(records, ["method", "target", "sparsity", "accuracy", "drop"],
                           title=f"accuracy vs sparsity ({epochs} retraining epochs; float {reference:.4f})"))
        save_json(records, out / "pruning.json", metadata=metadata)
        save_csv(records, out / "pruning.csv")
        save_figure(line_plot(records, "sparsity", "accuracy", group="method", reference={"float": reference},
                              title=f"{args.model} on {args.dataset}: accuracy vs sparsity"), out / "pruning.png")
    sensitivity = pruning.sensitivity(model, test_set)
    print(format_table(sensitivity, title="per-layer sensitivity (one layer pruned, no retraining)"))
    save_json(sensitivity, out / "sensitivity.json", metadata=metadata)
    save_figure(line_plot(sensitivity, "sparsity", "accuracy", group="layer", reference={"float": reference},
                          title="per-layer sensitivity"), out / "sensitivity.png")
    shrink = pruning.shrink_latency(model, train_set, test_set, 0.5, epochs, args.seed)
    print(format_table([shrink], title="structured 50% of units, physically shrunk (forward latency, batch 256)"))
    save_json([shrink], out / "shrink.json", metadata=metadata)
    table = sharing.deep_compression(model, train_set, test_set, args.compression_sparsity, args.k, epochs,
                                     seed=args.seed)
    print(format_table(table, title="Deep-Compression-style table (bytes actually stored)"))
    save_json(table, out / "compression.json", metadata=metadata)
    save_csv(table, out / "compression.csv")
    print(f"wrote {out}/ (pruning, sensitivity, shrink, compression .json/.csv/.png); "
          f"wall time {time.perf_counter() - started:.1f} s")
