"""`tinyq intcheck` and `tinyq accumulator`: the command-line side of tinyq.experiments.accumulator."""
from __future__ import annotations

import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.options import (check_output_dir, data_options, int_in, no_progress_option, out_option,
                                    positive_int, seed_option)

_COMMON = [arg("--model", choices=["mlp", "convnet", "lenet"], default="mlp", help="architecture"),
           *data_options(),
           arg("--checkpoint", default=None, metavar="NPZ",
               help="float state dict of the same architecture (images in [0, 1]); default: train one"),
           arg("--bits", type=int_in(2, 8), default=8, help="weight and activation bits of the PTQ model (2..8)"),
           arg("--epochs", type=positive_int, default=None, help="float training epochs when no checkpoint is given"),
           seed_option(), no_progress_option()]


def _pair(args):
    from tinyq.experiments.accumulator import quantized_pair
    check_output_dir(args.out)
    return quantized_pair(args.model, args.dataset, args.seed, args.bits, checkpoint=args.checkpoint,
                          epochs=args.epochs, progress=not args.no_progress and None)


@command("intcheck", help="integer-only model vs its fake-quant model: LSBs per layer, identical predictions",
         args=[*_COMMON, out_option("runs/intcheck", help="folder for intcheck.json")])
def intcheck_command(args) -> int:
    """Quantize a float model by PTQ, convert it to integer-only layers and run both on the test set: per
    layer the largest code difference in LSBs (each layer on the fake-quant model's own input, and end to
    end), the logits' difference in accumulator units, the agreement of predictions; exit 1 if a layer
    differs by more than 1 LSB or fewer than 99.5% of the predictions agree."""
    from tinyq import records as rec
    from tinyq.experiments.accumulator import equivalence
    from tinyq.quant.int_modules import stored_bits

    start = time.perf_counter()
    pair = _pair(args)
    rows, summary = equivalence(pair)
    summary.update(stored_bits(pair["integer"]))
    print(rec.format_table(rows, title=f"{args.model} int{args.bits} vs fake quant on {args.dataset} test, "
                                       f"seed {args.seed}"))
    print(f"predictions identical: {summary['prediction_agreement']:.4f} of {summary['samples']}   accuracy: "
          f"float {summary['float_accuracy']:.4f}, fake quant {summary['fake_quant_accuracy']:.4f}, "
          f"integer {summary['integer_accuracy']:.4f}   stored: {summary['total'] / 8:.0f} bytes")
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "function"}
    rec.save_json(rows, Path(args.out) / "intcheck.json", metadata={**metadata, **summary})
    print(f"wrote {Path(args.out) / 'intcheck.json'} in {time.perf_counter() - start:.1f} s")
    ok = summary["max_isolated_lsb"] <= 1 and summary["logits_isolated_max_lsb"] <= 1 \
        and summary["prediction_agreement"] >= 0.995
    return 0 if ok else 1


@command("accumulator", help="accuracy of the integer model with a narrow accumulator (wrap vs saturate)",
         args=[*_COMMON, arg("--widths", type=int_in(2, 32), nargs="+", default=None, help="accumulator bits to try"),
               arg("--samples", type=positive_int, default=None, help="only the first N test images"),
               out_option("runs/accumulator", help="folder for accumulator.json, .csv and .png")])
def accumulator_command(args) -> int:
    """Run the integer model with its accumulator narrowed to each width (bias + products added one by one,
    wrapping or saturating); print accuracy, agreement with int32 and the overflow fraction; save the plot."""
    from tinyq import records as rec
    from tinyq.experiments.accumulator import DEFAULT_WIDTHS, accumulator_sweep, plot
    from tinyq.experiments.plotting import save_figure

    start = time.perf_counter()
    pair = _pair(args)
    widths = args.widths or DEFAULT_WIDTHS
    records = accumulator_sweep(pair, widths, samples=args.samples)
    print(rec.format_table(records, title=f"{args.model} int{args.bits} on {args.dataset}, seed {args.seed}"))
    out = Path(args.out)
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "function"}
    rec.save_json(records, out / "accumulator.json", metadata=metadata)
    rec.save_csv(records, out / "accumulator.csv")
    exact = [r["accuracy"] for r in records if r["accumulator_bits"] == max(widths)]
    save_figure(plot(records, reference=exact[0] if exact else None), out / "accumulator.png")
    print(f"wrote {out / 'accumulator.json'}, .csv, .png in {time.perf_counter() - start:.1f} s")
    return 0
