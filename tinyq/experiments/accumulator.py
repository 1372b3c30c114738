"""Integer-only inference experiments: the equivalence check and accuracy vs accumulator width.

    pair = quantized_pair("mlp", "digits", seed=0, bits=8)           # float → PTQ (fake quant) → integer model
    rows, summary = equivalence(pair)                                 # ≤ 1 LSB per layer? same predictions?
    records = accumulator_sweep(pair, widths=(12, 16, 20, 24, 32))    # accuracy with a narrow accumulator
    fig = plot(records)

The accumulator holds bias + Σ (q_x − z_x)(q_w − z_w). With 8-bit codes one product reaches 255·127 = 32,385,
so a 16-bit register overflows after two additions, and K products need about
log2(K · 255 · 127) + 1 bits (K = 64: 22 bits); with 4-bit codes one product is at most 15·7 = 105.
Records are plain dicts (tinyq.records prints and saves them).
"""
from __future__ import annotations

import numpy as np

from tinyq.experiments.bitwidth import (
    FLOAT_DEFAULTS,
    build_model,
    generator,
    load_data,
    train_float,
)

__all__ = ["DEFAULT_WIDTHS", "OVERFLOW_MODES", "accumulator_sweep", "equivalence", "plot", "quantized_pair"]

DEFAULT_WIDTHS = (8, 10, 12, 14, 16, 18, 20, 24, 32)
OVERFLOW_MODES = ("wrap", "saturate")


def quantized_pair(model_name: str = "mlp", dataset: str = "digits", seed: int = 0, bits: int = 8,
                   checkpoint=None, epochs: int | None = None, calibration_batches: int = 4,
                   gemm: str = "numba", progress: bool = False) -> dict:
    """{"fake_quant", "integer", "x_test", "y_test", "float_accuracy", ...}: a float model (trained with the
    bit-width sweep's recipe on [0, 1] images, or loaded from `checkpoint`, a state dict of the same
    architecture), quantized by PTQ with QuantConfig.uniform(bits) (BatchNorm folded), then to_integer."""
    from tinyq.data import DataLoader
    from tinyq.quant import QuantConfig, quantize_ptq
    from tinyq.quant.int_modules import to_integer
    from tinyq.serialize import load

    train_set, test_set = load_data(dataset)
    image_shape = train_set.x.shape[1:]
    model = build_model(model_name, image_shape, int(train_set.y.max()) + 1, rng=generator(seed, 0))
    if checkpoint is not None:
        model.load_state_dict(load(checkpoint))
    else:
        train_float(model, train_set, seed, epochs=epochs or _epochs(model_name), name=model_name, progress=progress)
    model.eval()
    from tinyq.experiments.bitwidth import evaluate
    float_accuracy = evaluate(model, test_set)
    calibration = DataLoader(train_set, 256, shuffle=True, rng=generator(seed, 2))
    fake_quant = quantize_ptq(model, calibration, QuantConfig.uniform(bits), num_batches=calibration_batches)
    return {"fake_quant": fake_quant, "integer": to_integer(fake_quant, gemm=gemm), "x_test": test_set.x,
            "y_test": test_set.y, "float_accuracy": float_accuracy, "model": model_name, "dataset": dataset,
            "bits": bits, "seed": seed}


def _epochs(model_name: str) -> int:
    from tinyq.train import fast_mode
    epochs = FLOAT_DEFAULTS[model_name]["epochs"]
    return min(epochs, 3) if fast_mode() else epochs


def equivalence(pair: dict) -> tuple[list, dict]:
    """equivalence_report of the pair on its test set, the float accuracy added to the summary."""
    from tinyq.quant.equivalence import equivalence_report
    rows, summary = equivalence_report(pair["fake_quant"], pair["integer"], pair["x_test"], pair["y_test"])
    summary["float_accuracy"] = pair["float_accuracy"]
    return rows, summary


def accumulator_sweep(pair: dict, widths=DEFAULT_WIDTHS, modes=OVERFLOW_MODES, samples: int | None = None) -> list:
    """One record per (accumulator bits, overflow mode): test accuracy, agreement with the exact int32 model,
    and the fraction of additions that overflowed. samples: use the first n test images (speed)."""
    from tinyq.quant.int_modules import set_accumulator
    model = pair["integer"]
    x, y = pair["x_test"][:samples], pair["y_test"][:samples]
    codes = model.quantize_input(x)
    exact = set_accumulator(model, None).logits(codes).argmax(axis=1)
    records = []
    for bits in widths:
        for mode in modes:
            set_accumulator(model, bits, mode)
            predictions = model.logits(codes).argmax(axis=1)
            layers = [layer for layer in model.layers.children() if getattr(layer, "accumulator", None)]
            overflows = sum(layer.overflows for layer in layers)
            additions = sum(layer.additions for layer in layers)
            records.append({"model": pair["model"], "bits": pair["bits"], "accumulator_bits": int(bits),
                            "overflow": mode, "accuracy": float(np.mean(predictions == y)),
                            "agreement": float(np.mean(predictions == exact)),
                            "overflow_fraction": overflows / max(additions, 1), "overflows": int(overflows)})
    set_accumulator(model, None)
    return records


def plot(records: list, reference: float | None = None):
    """Accuracy against accumulator bits, one line per (code bits, overflow mode)."""
    from tinyq.experiments.plotting import line_plot
    rows = [dict(r, line=f"int{r['bits']} {r['overflow']}") for r in records]
    return line_plot(rows, "accumulator_bits", "accuracy", group="line", xlabel="accumulator bits",
                     ylabel="test accuracy", title="integer inference: accuracy vs accumulator width",
                     reference=None if reference is None else {"int32 exact": reference})
