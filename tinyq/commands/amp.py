"""`tinyq amp`: the command-line side of tinyq.experiments.mixed_precision."""
from __future__ import annotations

import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.options import (check_output_dir, data_options, int_in, no_progress_option, out_option,
                                    positive_float, positive_int, seed_option)
from tinyq.experiments.mixed_precision import RUNS, SUMMARY_COLUMNS


@command("amp", help="mixed-precision training of the digits CNN: fp32, fp16 (no/static/dynamic loss scaling), "
                     "bf16, fp8",
         args=[arg("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="which precisions to train"),
               *data_options(),
               arg("--model", choices=["convnet", "mlp"], default="convnet"),
               arg("--width", type=positive_int, default=16, help="convnet channel width"),
               arg("--epochs", type=positive_int, default=12), arg("--lr", type=positive_float, default=0.05),
               arg("--batch-size", type=positive_int, default=32),
               arg("--loss-multiplier-log2", type=int_in(-100, 0), default=-14,
                   help="the loss is multiplied by 2^k (lr divided by it): small losses underflow in fp16"),
               arg("--static-scale-log2", type=int_in(0, 100), default=14, help="static loss scale 2^k"),
               arg("--init-scale-log2", type=int_in(0, 100), default=16, help="dynamic loss scale starts at 2^k"),
               arg("--growth-interval", type=positive_int, default=25,
                   help="dynamic scale grows after this many finite steps (PyTorch's default is 2000)"),
               arg("--limit", type=positive_int, default=None, help="use only the first N train and test samples"),
               seed_option(), out_option("runs/amp", help="folder for amp.json, .csv and .png"),
               no_progress_option()])
def amp_command(args) -> int:
    """Train the same CNN from the same initial weights in every precision; print the table of final test
    accuracy, skipped steps, final loss scale and the fraction of gradients that underflowed to zero;
    save JSON/CSV and the plot of the curves and of the loss scale."""
    from tinyq import amp
    from tinyq import records as rec
    from tinyq.experiments.mixed_precision import plot, run
    from tinyq.experiments.plotting import save_figure

    check_output_dir(args.out)
    start = time.perf_counter()
    print(amp.policy_table("float16"))
    results = run(args.runs, args.dataset, seed=args.seed, limit=args.limit,
                  progress=False if args.no_progress else None, model=args.model, width=args.width,
                  epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                  loss_multiplier=2.0 ** args.loss_multiplier_log2, static_scale=2.0 ** args.static_scale_log2,
                  init_scale=2.0 ** args.init_scale_log2, growth_interval=args.growth_interval)
    print(rec.format_table(results, SUMMARY_COLUMNS, title=f"mixed-precision training, seed {args.seed}"))
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    out = Path(args.out)
    rec.save_json(results, out / "amp.json", metadata=metadata)
    rec.save_csv([{k: r[k] for k in SUMMARY_COLUMNS} for r in results], out / "amp.csv")
    save_figure(plot(results), out / "amp.png")
    print(f"wrote {out / 'amp.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
