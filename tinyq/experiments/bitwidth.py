"""Accuracy against bit-width: PTQ with each observer and QAT with STE / LSQ, and per-layer sensitivity.

    tinyq sweep                      # digits, mlp: bits 8..2 × (PTQ minmax/percentile/mse/entropy, QAT ste/lsq)
    tinyq sweep --model convnet --bits 8 4 2 --qat-epochs 2
    tinyq sensitivity --bits 2       # one layer at a time at 2 bits: the accuracy each layer costs

Every configuration quantizes weights (symmetric, per output channel) and layer inputs
(asymmetric, per tensor) to the same bit-width ("W b A b"). The float model is trained
once (or loaded with --checkpoint); PTQ calibrates on the first training samples; QAT
fine-tunes a copy for a few epochs with SGD. Every random choice comes from --seed.
--checkpoint takes the float.npz this command writes (inputs are raw pixels in [0, 1]).
"""
from __future__ import annotations

import time

import numpy as np

from tinyq.formats.rounding import check_bits

METHOD_IDS = {"minmax": 0, "percentile": 1, "mse": 2, "entropy": 3, "moving_average": 4, "ste": 10, "lsq": 11,
              "pact": 12}
PTQ_OBSERVERS = ("minmax", "percentile", "mse", "entropy")
QAT_METHODS = ("ste", "lsq")
DEFAULT_BITS = (8, 6, 5, 4, 3, 2)
# float training: SGD with momentum 0.9, weight decay 5e-4, cosine decay, random 1-pixel shifts (as `tinyq train`)
FLOAT_DEFAULTS = {"mlp": dict(epochs=60, lr=0.1), "convnet": dict(epochs=12, lr=0.05), "lenet": dict(epochs=6, lr=0.05)}


def build_model(name: str, image_shape: tuple, num_classes: int = 10, rng: np.random.Generator | None = None):
    """mlp (in, 256, 128, classes) | convnet (convnet8, width 16) | lenet (28x28 / 32x32 images only)."""
    from tinyq import models
    return models.for_images(name, image_shape, num_classes, rng=rng, mlp_hidden=(256, 128), convnet_width=16)


def generator(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one part of the experiment: default_rng(SeedSequence([seed, *keys]))."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


def load_data(dataset: str):
    """(train ArrayDataset, test ArrayDataset) of a tinyq dataset, images in [0, 1]."""
    from tinyq.data import get_dataset
    return get_dataset(dataset, "train"), get_dataset(dataset, "test")


def evaluate(model, dataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of model (eval mode, no gradients) on an ArrayDataset (tinyq.train.evaluate)."""
    from tinyq.data import DataLoader
    from tinyq.train import evaluate as evaluate_loader
    accuracy = evaluate_loader(model, DataLoader(dataset, batch_size))["accuracy"]
    model.eval()
    return accuracy


def train(model, dataset, epochs: int, rng: np.random.Generator, optimizer: str = "adam", lr: float = 3e-3,
          batch_size: int = 32, progress: bool = False, weight_decay: float = 0.0,
          augment_rng: np.random.Generator | None = None):
    """Minimize cross-entropy for `epochs` epochs (tinyq.train.fit): Adam, or SGD with momentum 0.9;
    cosine learning-rate decay per step; batches shuffled by rng; with augment_rng, each image is shifted
    by up to one pixel (tinyq.data.RandomShift). Returns the model in eval mode.
    (PACT's L2 on α needs a loop that adds tinyq.quant.qat.regularization_loss; the sweep does not use it.)"""
    from tinyq import optim
    from tinyq.data import DataLoader, RandomShift
    from tinyq.train import fit

    params = list(model.parameters())
    opt = optim.Adam(params, lr=lr, weight_decay=weight_decay) if optimizer == "adam" else \
        optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    transform = RandomShift(1, augment_rng) if augment_rng is not None else None
    loader = DataLoader(dataset, batch_size, shuffle=True, rng=rng, transform=transform)
    fit(model, loader, opt, epochs, scheduler=optim.CosineLR(opt, total_steps=epochs * len(loader)),
        progress=progress)
    return model.eval()


def train_float(model, train_set, seed: int, epochs: int | None = None, name: str = "mlp", progress: bool = False):
    """The sweep's float recipe (FLOAT_DEFAULTS[name]): SGD + momentum, weight decay 5e-4, cosine, 1-pixel shifts."""
    settings = FLOAT_DEFAULTS[name]
    return train(model, train_set, epochs or settings["epochs"], generator(seed, 1), optimizer="sgd",
                 lr=settings["lr"], weight_decay=5e-4, augment_rng=generator(seed, 3), progress=progress)


# ---------------------------------------------------------------------------- configurations

def ptq_config(bits: int, observer: str):
    """Inputs: asymmetric per-tensor with `observer`. Weights: symmetric per-channel min-max, except for
    observer "mse", whose clip search also runs on each weight channel (128-bin histograms, 40 candidate
    clips). Histogram calibration (percentile, entropy) of a few hundred weights per channel means little,
    so those keep min-max weights, as TensorRT does."""
    from tinyq.quant.config import QConfig, QuantConfig, default_input_spec, default_weight_spec
    if observer == "mse":
        weight = default_weight_spec(bits, observer="mse", observer_kwargs={"bins": 128, "num_candidates": 40})
    else:
        weight = default_weight_spec(bits)
    return QuantConfig(QConfig(weight=weight, input=default_input_spec(bits, observer=observer)))


def qat_config(bits: int, method: str):
    """STE: min-max weights, moving-average inputs; LSQ: learned steps; PACT: learned input clip, STE weights."""
    from tinyq.quant.config import QuantConfig
    if method not in ("ste", "lsq", "pact"):
        raise ValueError(f"unknown QAT method {method!r}; choose ste, lsq or pact")
    observer = "moving_average" if method == "ste" else "minmax"
    return QuantConfig.uniform(bits, observer=observer, fake_quant=method)


def run_ptq(model, calibration, bits: int, observer: str):
    from tinyq.quant.ptq import quantize_ptq
    config = ptq_config(bits, observer)
    return quantize_ptq(model, calibration, config), config


def run_qat(model, train_set, bits: int, method: str, epochs: int, rng, lr: float = 0.01):
    from tinyq.quant.qat import convert, prepare_qat
    config = qat_config(bits, method)
    qmodel = train(prepare_qat(model, config), train_set, epochs, rng, optimizer="sgd", lr=lr)
    return convert(qmodel), config


def calibration_loader(train_set, samples: int = 512, batch_size: int = 128):
    """The first `samples` training images, in order (deterministic)."""
    from tinyq.data import ArrayDataset, DataLoader
    return DataLoader(ArrayDataset(train_set.x[:samples], train_set.y[:samples]), batch_size)


# ---------------------------------------------------------------------------- experiments

def sweep_cell(job, model, train_set, test_set, calibration, qat_epochs: int, seed: int) -> dict:
    """One grid cell (kind, method, bits) -> its record; its random choices come from (seed, 2, bits, method)."""
    from tinyq.quant.qat import model_size_bytes
    kind, name, b = job
    started = time.perf_counter()
    if kind == "ptq":
        qmodel, config = run_ptq(model, calibration, b, name)
    else:
        qmodel, config = run_qat(model, train_set, b, name, qat_epochs, generator(seed, 2, b, METHOD_IDS[name]))
    return dict(method=f"{kind}-{name}", kind=kind, bits=int(b), accuracy=evaluate(qmodel, test_set),
                size_bytes=model_size_bytes(qmodel), seconds=time.perf_counter() - started)


def sweep(model, train_set, test_set, bits=DEFAULT_BITS, observers=PTQ_OBSERVERS, qat_methods=QAT_METHODS,
          qat_epochs: int = 3, seed: int = 0, calibration_samples: int = 512, progress: bool = False,
          executor=None) -> list:
    """Records {method, kind, bits, accuracy, size_bytes, seconds}: fp32 first, then PTQ / QAT per bit-width
    (each cell a task of `executor`, a tinyq.parallel.Executor; None: one after another here)."""
    from functools import partial

    from tqdm.auto import tqdm
    from tinyq.quant.qat import model_size_bytes

    bits = [check_bits(b, "sweep") for b in bits]
    calibration = calibration_loader(train_set, calibration_samples)
    records = [dict(method="fp32", kind="float", bits=32, accuracy=evaluate(model, test_set),
                    size_bytes=model_size_bytes(model), seconds=0.0)]
    jobs = [("ptq", name, b) for b in bits for name in observers] + \
           [("qat", name, b) for b in bits for name in qat_methods]
    cell = partial(sweep_cell, model=model, train_set=train_set, test_set=test_set, calibration=calibration,
                   qat_epochs=qat_epochs, seed=seed)
    if executor is None:
        return records + [cell(job) for job in tqdm(jobs, desc="sweep", disable=not progress)]
    return records + executor.map(cell, jobs, desc="sweep", progress=progress)


def sensitivity_cell(name, folded, calibration, test_set, bits: int, observer: str, reference: float) -> dict:
    """One layer quantized alone -> {layer, bits, accuracy, drop}."""
    from tinyq.quant.config import QuantConfig
    from tinyq.quant.ptq import quantize_ptq
    layer_config = ptq_config(bits, observer).default
    qmodel = quantize_ptq(folded, calibration, QuantConfig(default=None, layers={name: layer_config}))
    accuracy = evaluate(qmodel, test_set)
    return dict(layer=name, bits=int(bits), accuracy=accuracy, drop=reference - accuracy)


def sensitivity(model, train_set, test_set, bits: int = 2, observer: str = "minmax",
                calibration_samples: int = 512, progress: bool = False, executor=None) -> list:
    """Records {layer, bits, accuracy, drop}: only that layer (weight and input) quantized to `bits` by PTQ
    (each layer a task of `executor`, a tinyq.parallel.Executor; None: one after another here)."""
    from functools import partial

    from tqdm.auto import tqdm
    from tinyq.quant.ptq import fold_batchnorm
    from tinyq.quant.qat import quantizable_layers

    bits = check_bits(bits, "sensitivity")
    folded = fold_batchnorm(model)
    reference = evaluate(folded, test_set)
    calibration = calibration_loader(train_set, calibration_samples)
    cell = partial(sensitivity_cell, folded=folded, calibration=calibration, test_set=test_set, bits=bits,
                   observer=observer, reference=reference)
    layers = quantizable_layers(folded)
    if executor is None:
        return [cell(name) for name in tqdm(layers, desc="sensitivity", disable=not progress)]
    return executor.map(cell, layers, desc="sensitivity", progress=progress)


# ---------------------------------------------------------------------------- used by `tinyq sweep` / `tinyq sensitivity`

def checkpoint_candidates(image_shape: tuple, num_classes: int = 10) -> dict:
    """{description: model} of the float models tinyq writes, to name what a mismatched checkpoint holds."""
    from tinyq import models
    candidates = {}
    for name in FLOAT_DEFAULTS:
        try:
            candidates[f"a `tinyq sweep --model {name}` float model"] = build_model(name, image_shape, num_classes)
            candidates[f"a `tinyq train --model {name}` model"] = models.for_images(name, image_shape, num_classes)
        except ValueError:      # lenet on 8x8 images
            continue
    return candidates


def float_epochs(model_name: str, epochs: int | None) -> int:
    """--epochs or the model's default; at most 5 under TINYQ_FAST."""
    from tinyq.train import fast_mode
    epochs = epochs or FLOAT_DEFAULTS[model_name]["epochs"]
    return min(epochs, 5) if fast_mode() else epochs


def plot_sweep(records: list, model_name: str, dataset: str):
    """Accuracy against bits, one line per method, fp32 as a reference line (records[0])."""
    from tinyq.experiments.plotting import line_plot
    return line_plot(records[1:], "bits", "accuracy", group="method", reference={"fp32": records[0]["accuracy"]},
                     title=f"{model_name} on {dataset}: accuracy vs bit-width (W = A bits)",
                     xlabel="bits (weights and activations)", ylabel="test accuracy", invert_x=True)


def plot_sensitivity(records: list, bits: int):
    from tinyq.experiments.plotting import bar_plot
    return bar_plot(records, "layer", "drop", title=f"accuracy drop with one layer at {bits} bits",
                    ylabel="accuracy drop (fp32 − quantized)")
