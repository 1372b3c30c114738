"""`tinyq export CHECKPOINT --onnx OUT.onnx --safetensors OUT.safetensors`: a `tinyq train` run for other tools.

The run folder's manifest (run.json, or history.json's metadata) names the model, dataset, seed and
validation share; from them the model is rebuilt, the checkpoint loaded, and the standardization
recomputed exactly as `tinyq train` computed it (mean/std per channel of the training split), so the
ONNX graph takes raw images in [0, 1] (N, C, H, W). `--quantize qdq|integer` exports the PTQ model
instead. `--check` runs the graph in ONNX Runtime on the test split and compares it with tinyq (a QDQ
graph twice: with the runtime's fused integer kernels, and as written, optimization "basic").
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyq.cli import arg, command


def _run_settings(folder: Path) -> dict:
    """{"model", "dataset", "seed", "val_fraction"} of the run that wrote folder."""
    for name, pick in (("run.json", lambda d: d.get("settings")), ("history.json", lambda d: d.get("metadata"))):
        path = folder / name
        if path.is_file():
            try:
                settings = pick(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, AttributeError) as error:
                raise ValueError(f"{path} is not a readable run description ({error})") from None
            if isinstance(settings, dict) and {"model", "dataset", "seed"} <= set(settings):
                return settings
    raise ValueError(f"{folder} holds no run.json or history.json from `tinyq train` (naming model, dataset, "
                     "seed): export needs them to rebuild the model and its standardization")


def rebuild_run(checkpoint):
    """(model in eval mode with the checkpoint loaded, mean, std, settings, training images) for a `tinyq train`
    checkpoint (a run folder, which means its best.npz, or one of its .npz files)."""
    import numpy as np

    import tinyq as tq
    from tinyq.data import LOADERS
    from tinyq.train import build_model, split_validation

    path = Path(checkpoint)
    if path.is_dir():
        folder, path = path, path / "best.npz"
    else:
        folder = path.parent
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist (give a run folder of `tinyq train` or its .npz)")
    settings = _run_settings(folder)
    dataset = settings["dataset"]
    if dataset not in LOADERS:
        raise ValueError(f"{folder}: unknown dataset {dataset!r} (expected one of {', '.join(LOADERS)})")
    # the training split exactly as tinyq.train.run draws it: the second of four seeds spawned from `seed`
    split_rng = np.random.default_rng(np.random.SeedSequence(int(settings["seed"])).spawn(4)[1])
    x_all, y_all = LOADERS[dataset]("train")
    x_train = split_validation(x_all, y_all, float(settings.get("val_fraction", 0.1)), split_rng)[0]
    mean, std = x_train.mean(axis=(0, 2, 3)), x_train.std(axis=(0, 2, 3))
    model = build_model(settings["model"], x_all.shape[1:], int(y_all.max()) + 1)
    model.load_state_dict(tq.load(path))
    return model.eval(), mean, std, {**settings, "image_shape": tuple(x_all.shape[1:])}, x_train


@command("export", help="export a `tinyq train` checkpoint to ONNX (with its standardization) and/or safetensors",
         args=[arg("checkpoint", help="a run folder of `tinyq train` (its best.npz) or one of its .npz files"),
               arg("--onnx", metavar="OUT.onnx", default=None, help="write the ONNX graph here"),
               arg("--safetensors", metavar="OUT.safetensors", default=None, help="write the weights here"),
               arg("--quantize", choices=["qdq", "integer"], default=None,
                   help="export the PTQ model (calibrated on 512 training images) as a QDQ graph, or its integer "
                        "model (MatMulInteger/ConvInteger, gemmlowp requantization)"),
               arg("--opset", type=int, default=None, help="ONNX opset (default: tinyq.interop.onnx.DEFAULT_OPSET)"),
               arg("--check", action="store_true",
                   help="run the ONNX graph in ONNX Runtime on the test split and compare with tinyq")])
def export_command(args) -> int:
    """Rebuild the model of a training run and write it for other tools; --check compares ONNX Runtime's
    outputs with tinyq's on the test split (max relative difference, equal predictions, accuracy)."""
    if args.onnx is None and args.safetensors is None:
        raise ValueError("nothing to export: give --onnx OUT.onnx and/or --safetensors OUT.safetensors")
    model, mean, std, settings, x_train = rebuild_run(args.checkpoint)
    if args.safetensors is not None:
        from tinyq.interop.safetensors import save_safetensors
        save_safetensors(model, args.safetensors, metadata={k: str(settings[k]) for k in ("model", "dataset", "seed")})
        print(f"weights -> {args.safetensors}")
    if args.onnx is not None:
        from tinyq.interop.onnx import DEFAULT_OPSET, to_onnx
        if args.quantize is not None:
            from tinyq.data import normalize
            from tinyq.quant import quantize_ptq
            from tinyq.quant.int_modules import to_integer
            calibration = normalize(x_train[:512], mean, std)
            model = quantize_ptq(model, [calibration[i:i + 128] for i in range(0, len(calibration), 128)])
            model = to_integer(model) if args.quantize == "integer" else model
        proto = to_onnx(model, args.onnx, input_shape=settings["image_shape"], mean=mean, std=std,
                        opset=args.opset or DEFAULT_OPSET, name=f"tinyq-{settings['model']}-{settings['dataset']}")
        print(f"ONNX graph ({len(proto.graph.node)} nodes, opset {proto.opset_import[0].version}, input: images in "
              f"[0, 1] shaped (N, {', '.join(map(str, settings['image_shape']))})) -> {args.onnx}")
        if args.check:
            for optimization in ("all", "basic") if args.quantize == "qdq" else ("all",):
                _check(model, proto, mean, std, settings["dataset"], optimization)
    return 0


def _check(model, proto, mean, std, dataset, optimization) -> None:
    import numpy as np

    from tinyq import autograd_state
    from tinyq.data import LOADERS, normalize
    from tinyq.interop.onnx import run_onnx
    from tinyq.tensor import Tensor

    x_test, y_test = LOADERS[dataset]("test")
    with autograd_state.no_grad():
        ours = np.concatenate([model(Tensor(normalize(x_test[i:i + 256], mean, std))).data
                               for i in range(0, len(x_test), 256)])
    theirs = run_onnx(proto, x_test, optimization=optimization)
    relative = float(np.abs(theirs - ours).max() / np.abs(ours).max())
    print(f"ONNX Runtime ({optimization} optimizations) vs tinyq on {len(x_test)} test images: max |diff| / max |logit| = {relative:.2e}, "
          f"equal predictions {np.mean(theirs.argmax(1) == ours.argmax(1)):.4f}, accuracy ONNX Runtime "
          f"{np.mean(theirs.argmax(1) == y_test):.4f} / tinyq {np.mean(ours.argmax(1) == y_test):.4f}")
