"""Equivalence report: the fake-quant model and its integer-only model side by side, layer by layer.

At the input of every quantized layer both models hold integer codes on the same grid: the fake-quant
model's are quantize(x, input QParams) of its float activations, the integer model's come out of the
requantizer. The report gives, per layer, the largest code difference in LSBs and the fraction of codes
that differ; at the output, the largest logit difference in units of the accumulator scale S_x·S_w
and the fraction of identical predictions.

    rows, summary = equivalence_report(qsim, to_integer(qsim), x_test, y_test)
"""
from __future__ import annotations

import numpy as np

from tinyq import autograd_state
from tinyq.formats.affine import quantize
from tinyq.quant.int_modules import (
    IntegerModel,
    IntGlobalAvgPool2d,
    _IntGemmLayer,
    flat_layers,
    layer_qparams,
)
from tinyq.quant.qat import _QuantLayer
from tinyq.tensor import Tensor

__all__ = ["equivalence_report", "fake_quant_layer_codes"]


def fake_quant_layer_codes(model, x) -> tuple[list, list, np.ndarray]:
    """(names, codes entering each quantized layer, final float logits) of the fake-quant model on x."""
    names, codes = [], []
    activation = Tensor(np.asarray(x, dtype=np.float32))
    with autograd_state.no_grad():
        for name, module in flat_layers(model):
            if isinstance(module, _QuantLayer):
                names.append(name)
                codes.append(quantize(activation.data, layer_qparams(module).input))
            activation = module(activation)
    return names, codes, activation.data


def equivalence_report(fake_model, int_model: IntegerModel, x, labels=None) -> tuple[list, dict]:
    """(rows, summary) comparing the two models at the input of every quantized layer and at the logits.

    Each row: layer (the name of the quantized layer whose output is compared; its output = the codes entering
    the next quantized layer, or the logits for the last), isolated_max_lsb (the integer layer run on the
    fake-quant model's own input codes: the error of this layer alone), isolated_differing (fraction of codes
    that differ), propagated_max_lsb (the integer model end to end: errors of earlier layers included).
    Logits are compared in units of the accumulator scale S_x·S_w (a final global average pool divides the
    summed accumulators by H·W: still ≤ 1 unit); their isolated_differing is the fraction of changed
    predictions. summary: max_isolated_lsb,
    max_propagated_lsb (codes), prediction_agreement, and both accuracies when labels are given."""
    names, fake_codes, fake_logits = fake_quant_layer_codes(fake_model, x)
    layers = list(int_model.layers.children())
    starts = [p for p, layer in enumerate(layers) if isinstance(layer, _IntGemmLayer)]
    if len(starts) != len(fake_codes):
        raise ValueError(f"equivalence_report: the models have {len(fake_codes)} and {len(starts)} quantized "
                         "layers; is int_model made from fake_model?")
    trace = []
    first = int_model.quantize_input(x)
    int_logits = int_model.logits(first, trace)
    unit = np.asarray(int_model.output_scale, np.float64)
    rows = []
    for j, (name, start) in enumerate(zip(names, starts)):
        last = j == len(starts) - 1
        stop = len(layers) if last else starts[j + 1]
        isolated = fake_codes[j]
        for layer in layers[start:stop]:
            isolated = layer(isolated)
        if last:
            count = int(np.prod(trace[-2].shape[2:])) if _ends_with_pool(layers) else 1
            own_logits = int_model.dequantize_output(isolated, count)
            own = np.abs(own_logits.astype(np.float64) - fake_logits) / unit
            rows.append({"layer": name, "compared": "logits", "isolated_max_lsb": float(own.max()),
                         "isolated_differing": float(np.mean(own_logits.argmax(axis=1) != fake_logits.argmax(axis=1))),
                         "propagated_max_lsb": float(np.max(np.abs(int_logits - fake_logits) / unit))})
        else:
            own = np.abs(isolated.astype(np.int64) - fake_codes[j + 1])
            propagated = np.abs(trace[stop - 1].astype(np.int64) - fake_codes[j + 1])
            rows.append({"layer": name, "compared": f"codes into {names[j + 1]}", "isolated_max_lsb": int(own.max()),
                         "isolated_differing": float(np.mean(own > 0)), "propagated_max_lsb": int(propagated.max())})
    fake_pred, int_pred = fake_logits.argmax(axis=1), int_logits.argmax(axis=1)
    code_rows = rows[:-1] or [{"isolated_max_lsb": 0, "propagated_max_lsb": 0}]
    summary = {"max_isolated_lsb": max(r["isolated_max_lsb"] for r in code_rows),
               "max_propagated_lsb": max(r["propagated_max_lsb"] for r in code_rows),
               "logits_isolated_max_lsb": rows[-1]["isolated_max_lsb"],
               "prediction_agreement": float(np.mean(fake_pred == int_pred)), "samples": len(fake_pred)}
    if labels is not None:
        labels = np.asarray(labels)
        summary["fake_quant_accuracy"] = float(np.mean(fake_pred == labels))
        summary["integer_accuracy"] = float(np.mean(int_pred == labels))
    return rows, summary


def _ends_with_pool(layers) -> bool:
    return isinstance(layers[-1], IntGlobalAvgPool2d)
