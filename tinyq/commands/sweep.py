"""`tinyq sweep` and `tinyq sensitivity`: the command-line side of tinyq.experiments.bitwidth."""
from __future__ import annotations

import os
import sys
import time

from tinyq.cli import arg, command
from tinyq.commands.options import (OptionError, check_output_dir, data_options, int_in, no_progress_option,
                                    out_option, positive_int, run_folder_options, seed_option)
from tinyq.commands.parallel_options import parallel_args
from tinyq.experiments.bitwidth import DEFAULT_BITS, PTQ_OBSERVERS, QAT_METHODS
from tinyq.formats.rounding import MAX_BITS, MIN_BITS

SWEEP_FILES = ("run.json", "float.npz", "sweep.json", "sweep.csv", "sweep.png", "sensitivity.json",
               "sensitivity.csv", "sensitivity.png")


def _common_args(out_default: str):
    return [arg("--model", default="mlp", choices=["mlp", "convnet", "lenet"]),
            *data_options(),
            arg("--checkpoint", default=None, help="load this float state dict (.npz) instead of training"),
            arg("--epochs", type=positive_int, default=None, help="float training epochs (default per model)"),
            out_option(out_default, help="folder for JSON, CSV, PNG and the float checkpoint"),
            *run_folder_options(),
            seed_option(),
            no_progress_option(),
            *parallel_args()]


def _check_observer(name: str, option: str) -> None:
    from tinyq.quant.observers import OBSERVERS
    if name not in OBSERVERS:
        raise OptionError(option, f"unknown observer {name!r}; known observers: {', '.join(sorted(OBSERVERS))}")


def _prepare(args, command_name: str, settings: dict, echo):
    """Everything that can fail on bad input, before anything is written: --out, data, model, --checkpoint.
    Then claim the run folder and train (or load) the float model. Returns (model, data, folder)."""
    import tinyq as tq
    from tinyq.experiments import bitwidth
    from tinyq.run_folder import RunFolder
    from tinyq.serialize import load_into

    check_output_dir(args.out)
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise OptionError("--checkpoint", f"{args.checkpoint} does not exist (or is not a file)")
    args.progress = not args.no_progress and sys.stderr.isatty()
    train_set, test_set = bitwidth.load_data(args.dataset)
    shape, classes = train_set.x.shape[1:], int(train_set.y.max()) + 1
    try:
        model = bitwidth.build_model(args.model, shape, classes, rng=bitwidth.generator(args.seed, 0))
    except ValueError as error:         # lenet on the 8x8 digits
        raise OptionError("--model", str(error)) from None
    if args.checkpoint:
        try:
            load_into(model, args.checkpoint, bitwidth.checkpoint_candidates(shape, classes))
        except ValueError as error:
            raise OptionError("--checkpoint", str(error)) from None
    folder = RunFolder(args.out, command_name, settings, outputs=SWEEP_FILES)
    previous = folder.open(resume=args.resume, overwrite=args.overwrite)
    if args.checkpoint:
        echo(f"loaded {args.model} from {args.checkpoint}")
    elif previous is not None and "float.npz" in previous["files"]:
        model.load_state_dict(tq.load(folder.path / "float.npz"))
        echo(f"resumed: loaded the float {args.model} trained in {args.out}")
    else:
        epochs = bitwidth.float_epochs(args.model, args.epochs)
        started = time.perf_counter()
        bitwidth.train_float(model, train_set, args.seed, epochs, args.model, progress=args.progress)
        state = model.state_dict()
        folder.commit({"float.npz": lambda tmp: tq.save(state, tmp)}, info={"progress": "float model trained"})
        echo(f"trained float {args.model} on {args.dataset} for {epochs} epochs in "
             f"{time.perf_counter() - started:.1f} s (saved to {folder.path / 'float.npz'}; reuse with --checkpoint)")
    return model, train_set, test_set, folder


def _record_writers(records: list, stem: str, metadata: dict, figure) -> dict:
    from tinyq.experiments.plotting import save_figure
    from tinyq.records import save_csv, save_json
    return {f"{stem}.json": lambda tmp: save_json(records, tmp, metadata=metadata),
            f"{stem}.csv": lambda tmp: save_csv(records, tmp),
            f"{stem}.png": lambda tmp: save_figure(figure, tmp, format="png")}


def _settings(args, *names) -> dict:
    return {name: getattr(args, name) for name in names}


@command("sweep", help="accuracy vs bit-width: PTQ with each observer and QAT (STE, LSQ) at 8..2 bits",
         args=_common_args("runs/sweep") + [
             arg("--bits", type=int_in(MIN_BITS, MAX_BITS), nargs="+", default=list(DEFAULT_BITS),
                 help=f"bit-widths ({MIN_BITS}..{MAX_BITS})"),
             arg("--observers", nargs="+", default=list(PTQ_OBSERVERS), help="PTQ observers"),
             arg("--qat", nargs="+", default=list(QAT_METHODS), choices=["ste", "lsq", "pact"],
                 help="QAT methods: ste lsq pact"),
             arg("--qat-epochs", type=positive_int, default=3, help="QAT fine-tuning epochs from the float model"),
             arg("--sensitivity", action="store_true", help="also run the per-layer sensitivity"),
             arg("--sensitivity-bits", type=int_in(MIN_BITS, MAX_BITS), default=2)])
def sweep_command(args):
    """Train (or load) a float model, then quantize it at each bit-width with PTQ (each observer) and QAT
    (short fine-tuning); print method × bits → test accuracy and model size; write sweep.json/.csv/.png."""
    from tinyq.experiments.bitwidth import plot_sensitivity, plot_sweep, sensitivity, sweep
    from tinyq.records import format_table, pivot
    from tinyq.train import fast_mode

    echo = print
    started = time.perf_counter()
    for name in args.observers:
        _check_observer(name, "--observers")
    qat_epochs = 1 if fast_mode() else args.qat_epochs
    settings = _settings(args, "model", "dataset", "checkpoint", "epochs", "seed", "bits", "observers", "qat",
                         "qat_epochs", "sensitivity", "sensitivity_bits")
    from tinyq.parallel import make_executor
    with make_executor(args.jobs, args.scheduler) as executor:      # an unreachable scheduler fails here, first
        model, train_set, test_set, folder = _prepare(args, "sweep", settings, echo)
        records = sweep(model, train_set, test_set, args.bits, args.observers, args.qat, qat_epochs, args.seed,
                        progress=args.progress, executor=executor)
        layers = sensitivity(model, train_set, test_set, args.sensitivity_bits, progress=args.progress,
                             executor=executor) if args.sensitivity else None
    fp32 = records[0]
    table = pivot(records[1:], "method", "bits", "accuracy")
    sizes = {"method": "size (bytes)"}
    sizes.update({f"bits={r['bits']}": r["size_bytes"] for r in records[1:]})
    echo(format_table(table + [sizes], title=f"test accuracy, {args.model} on {args.dataset} "
                                            f"(fp32 {fp32['accuracy']:.4f}, {fp32['size_bytes']} bytes)"))
    metadata = dict(settings, qat_epochs=qat_epochs)
    files = _record_writers(records, "sweep", metadata, plot_sweep(records, args.model, args.dataset))
    if args.sensitivity:
        echo(format_table(layers, title=f"per-layer sensitivity: one layer at a time at {args.sensitivity_bits} "
                                        "bits (PTQ minmax)"))
        files.update(_record_writers(layers, "sensitivity", {"bits": args.sensitivity_bits, "observer": "minmax"},
                                     plot_sensitivity(layers, args.sensitivity_bits)))
    folder.commit(files, status="finished", info={"progress": "finished"})
    echo(f"wrote {', '.join(name for name in files)} in {args.out}")
    echo(f"wall time: {time.perf_counter() - started:.1f} s")


@command("sensitivity", help="per-layer sensitivity: quantize one layer at a time to low bits, report the drop",
         args=_common_args("runs/sensitivity") + [
             arg("--bits", type=int_in(MIN_BITS, MAX_BITS), default=2,
                 help=f"bit-width for the one quantized layer ({MIN_BITS}..{MAX_BITS})"),
             arg("--observer", default="minmax", help="PTQ observer")])
def sensitivity_command(args):
    """Quantize each Linear/Conv2d alone (weights and input) with PTQ at --bits; table + bar plot of the drop."""
    from tinyq.experiments.bitwidth import plot_sensitivity, sensitivity
    from tinyq.records import format_table

    echo = print
    started = time.perf_counter()
    _check_observer(args.observer, "--observer")
    settings = _settings(args, "model", "dataset", "checkpoint", "epochs", "seed", "bits", "observer")
    from tinyq.parallel import make_executor
    with make_executor(args.jobs, args.scheduler) as executor:      # an unreachable scheduler fails here, first
        model, train_set, test_set, folder = _prepare(args, "sensitivity", settings, echo)
        records = sensitivity(model, train_set, test_set, args.bits, args.observer, progress=args.progress,
                              executor=executor)
    echo(format_table(records, title=f"per-layer sensitivity: one layer at a time at {args.bits} bits "
                                     f"(PTQ {args.observer})"))
    files = _record_writers(records, "sensitivity", settings, plot_sensitivity(records, args.bits))
    folder.commit(files, status="finished", info={"progress": "finished"})
    echo(f"wrote {', '.join(files)} in {args.out}")
    echo(f"wall time: {time.perf_counter() - started:.1f} s")
