"""`tinyq intcheck` and `tinyq accumulator`: the command-line side of tinyq.experiments.accumulator."""
from __future__ import annotations

import time
from pathlib import Path

from tinyq.cli import arg, command

_COMMON = [arg("--model", choices=["mlp", "convnet", "lenet"], default="mlp", help="architecture"),
           arg("--dataset", choices=["digits", "mnist", "fashion"], default="digits",
               help="digits ships with tinyq; mnist/fashion are downloaded once into $TINYQ_DATA"),
           arg("--checkpoint", default=None, metavar="NPZ",
               help="float state dict of the same architecture (images in [0, 1]); default: train one"),
           arg("--bits", type=int, default=8, help="weight and activation bits of the PTQ model"),
           arg("--epochs", type=int, default=None, help="float training epochs when no checkpoint is given"),
           arg("--seed", type=int, default=0), arg("--no-progress", action="store_true")]


def _pair(args):
    from tinyq.experiments.accumulator import quantized_pair
    if not 2 <= args.bits <= 8:
        raise SystemExit(f"tinyq: --bits must be in 2..8 for integer-only inference, got {args.bits}")
    return quantized_pair(args.model, args.dataset, args.seed, args.bits, checkpoint=args.checkpoint,
                          epochs=args.epochs, progress=not args.no_progress and None)


@command("intcheck", help="integer-only model vs its fake-quant model: LSBs per layer, identical predictions",
         args=_COMMON + [arg("--out", default="runs/intcheck", metavar="DIR", help="folder for intcheck.json")])
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
         args=_COMMON + [arg("--widths", type=int, nargs="+", default=None, help="accumulator bits to try"),
                         arg("--samples", type=int, default=None, help="only the first N test images"),
                         arg("--out", default="runs/accumulator", metavar="DIR",
                             help="folder for accumulator.json, .csv and .png")])
def accumulator_command(args) -> int:
    """Run the integer model with its accumulator narrowed to each width (bias + products added one by one,
    wrapping or saturating); print accuracy, agreement with int32 and the overflow fraction; save the plot."""
    from tinyq import records as rec
    from tinyq.experiments.accumulator import DEFAULT_WIDTHS, accumulator_sweep, plot
    from tinyq.experiments.plotting import save_figure

    start = time.perf_counter()
    pair = _pair(args)
    widths = args.widths or DEFAULT_WIDTHS
    if any(not 2 <= w <= 32 for w in widths):
        raise SystemExit(f"tinyq: --widths must be in 2..32, got {widths}")
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
