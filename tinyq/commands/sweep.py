"""`tinyq sweep` and `tinyq sensitivity`: the command-line side of tinyq.experiments.bitwidth."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tinyq.cli import arg, command
from tinyq.commands.parallel_options import parallel_args
from tinyq.experiments.bitwidth import (DEFAULT_BITS, PTQ_OBSERVERS, QAT_METHODS, float_model, sensitivity, sweep,
                                        write_sensitivity)


def _common_args(out_default: str):
    return [arg("--dataset", default="digits", help="digits (bundled) | mnist | fashion"),
            arg("--model", default="mlp", choices=["mlp", "convnet", "lenet"]),
            arg("--checkpoint", default=None, help="load this float state dict (.npz) instead of training"),
            arg("--epochs", type=int, default=None, help="float training epochs (default per model)"),
            arg("--out", default=out_default, help="folder for JSON, CSV, PNG and the float checkpoint"),
            arg("--seed", type=int, default=0),
            arg("--no-progress", action="store_true", help="no progress bars (they are off when not a terminal)"),
            *parallel_args()]


def _setup(args):
    args.progress = not args.no_progress and sys.stderr.isatty()
    os.makedirs(args.out, exist_ok=True)
    return print


@command("sweep", help="accuracy vs bit-width: PTQ with each observer and QAT (STE, LSQ) at 8..2 bits",
         args=_common_args("runs/sweep") + [
             arg("--bits", type=int, nargs="+", default=list(DEFAULT_BITS), help="bit-widths (2..16)"),
             arg("--observers", nargs="+", default=list(PTQ_OBSERVERS), help="PTQ observers"),
             arg("--qat", nargs="+", default=list(QAT_METHODS), help="QAT methods: ste lsq pact"),
             arg("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs from the float model"),
             arg("--sensitivity", action="store_true", help="also run the per-layer sensitivity"),
             arg("--sensitivity-bits", type=int, default=2)])
def sweep_command(args):
    """Train (or load) a float model, then quantize it at each bit-width with PTQ (each observer) and QAT
    (short fine-tuning); print method × bits → test accuracy and model size; write sweep.json/.csv/.png."""
    from tinyq.experiments.plotting import line_plot, save_figure
    from tinyq.records import format_table, pivot, save_csv, save_json
    from tinyq.quant.observers import OBSERVERS

    echo = _setup(args)
    started = time.perf_counter()
    for name in args.observers:
        if name not in OBSERVERS:
            raise ValueError(f"unknown observer {name!r}; known observers: {', '.join(sorted(OBSERVERS))}")
    for name in args.qat:
        if name not in ("ste", "lsq", "pact"):
            raise ValueError(f"unknown QAT method {name!r}; choose from ste, lsq, pact")
    for b in args.bits:
        if not 2 <= b <= 16:
            raise ValueError(f"sweep expects bit-widths in 2..16, got {b}")
    if args.qat_epochs < 1:
        raise ValueError(f"--qat-epochs must be >= 1, got {args.qat_epochs}")
    from tinyq.train import fast_mode
    if fast_mode():
        args.qat_epochs = 1
    from tinyq.parallel import make_executor
    with make_executor(args.jobs, args.scheduler) as executor:      # an unreachable scheduler fails here, first
        model, train_set, test_set = float_model(args, echo)
        records = sweep(model, train_set, test_set, args.bits, args.observers, args.qat, args.qat_epochs, args.seed,
                        progress=args.progress, executor=executor)
    out = Path(args.out)
    fp32 = records[0]
    table = pivot(records[1:], "method", "bits", "accuracy")
    sizes = {"method": "size (bytes)"}
    sizes.update({f"bits={r['bits']}": r["size_bytes"] for r in records[1:]})
    echo(format_table(table + [sizes], title=f"test accuracy, {args.model} on {args.dataset} "
                                            f"(fp32 {fp32['accuracy']:.4f}, {fp32['size_bytes']} bytes)"))
    metadata = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    save_json(records, out / "sweep.json", metadata=metadata)
    save_csv(records, out / "sweep.csv")
    figure = line_plot(records[1:], "bits", "accuracy", group="method", reference={"fp32": fp32["accuracy"]},
                       title=f"{args.model} on {args.dataset}: accuracy vs bit-width (W = A bits)",
                       xlabel="bits (weights and activations)", ylabel="test accuracy", invert_x=True)
    save_figure(figure, out / "sweep.png")
    echo(f"wrote {out / 'sweep.json'}, .csv and .png")
    if args.sensitivity:
        with make_executor(args.jobs, args.scheduler) as executor:
            records = sensitivity(model, train_set, test_set, args.sensitivity_bits, progress=args.progress,
                                  executor=executor)
        write_sensitivity(records, out, echo, args.sensitivity_bits, "minmax")
    echo(f"wall time: {time.perf_counter() - started:.1f} s")


@command("sensitivity", help="per-layer sensitivity: quantize one layer at a time to low bits, report the drop",
         args=_common_args("runs/sensitivity") + [
             arg("--bits", type=int, default=2, help="bit-width for the one quantized layer (2..16)"),
             arg("--observer", default="minmax", help="PTQ observer")])
def sensitivity_command(args):
    """Quantize each Linear/Conv2d alone (weights and input) with PTQ at --bits; table + bar plot of the drop."""
    echo = _setup(args)
    started = time.perf_counter()
    if not 2 <= args.bits <= 16:
        raise ValueError(f"--bits must be in 2..16, got {args.bits}")
    from tinyq.parallel import make_executor
    with make_executor(args.jobs, args.scheduler) as executor:
        model, train_set, test_set = float_model(args, echo)
        records = sensitivity(model, train_set, test_set, args.bits, args.observer, progress=args.progress,
                              executor=executor)
    write_sensitivity(records, Path(args.out), echo, args.bits, args.observer)
    echo(f"wall time: {time.perf_counter() - started:.1f} s")
