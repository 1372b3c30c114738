"""Inference time per batch of 64: tinyq float / integer against ONNX Runtime on float, QDQ and integer graphs.

Two models: the digits convnet (8×8, width 32) and LeNet-5 (28×28 input; random weights and random
images in [0, 1] unless MNIST is in $TINYQ_DATA: speed does not depend on the values). Each is
quantized by PTQ (per-channel int8 weights, uint8 inputs) and turned into tinyq's integer model;
the same four models are exported to ONNX and run by ONNX Runtime's CPU provider with the same
thread count. Medians of interleaved repeats (common.compare); ratios are to tinyq float in the same
run. The machine is shared: read the ratios with the load average recorded beside them.

    python benchmarks/bench_interop.py [--quick] [--threads 1]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__.split("\n")[0], "bench_interop.json",
                                     threads_help="threads for BLAS/numba/ONNX Runtime (default 1)")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    common.pin_threads(ARGS.threads)

import numpy as np

from tinyq import autograd_state, models
from tinyq.data.datasets import load_digits
from tinyq.interop.onnx import session_for, to_onnx
from tinyq.quant import quantize_ptq
from tinyq.quant.int_modules import to_integer
from tinyq.tensor import Tensor


def _ort(proto, x, threads):
    session = session_for(proto, threads)
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def bench_model(label, model, x_calib, batch, threads, number, repeat):
    model.eval()
    qsim = quantize_ptq(model, [x_calib[i:i + 64] for i in range(0, len(x_calib), 64)])
    int_model = to_integer(qsim)
    shape = batch.shape[1:]
    graphs = {"float": to_onnx(model, input_shape=shape), "qdq": to_onnx(qsim, input_shape=shape),
              "integer": to_onnx(int_model, input_shape=shape)}

    def tinyq_float():
        with autograd_state.no_grad():
            model(Tensor(batch))

    candidates = {"tinyq float": tinyq_float, "tinyq integer": lambda: int_model(batch),
                  **{f"ORT {kind}": _ort(proto, batch, threads) for kind, proto in graphs.items()}}
    timings = common.compare(candidates, number=number, repeat=repeat)
    base = timings["tinyq float"]["median_s"]
    rows = [{"model": label, "runner": name, "ms_per_batch": round(1e3 * t["median_s"], 3),
             "speedup_vs_tinyq_float": round(base / t["median_s"], 3)} for name, t in timings.items()]
    print(common.format_table(rows, [("model", "model"), ("runner", "runner"), ("ms_per_batch", "ms / batch 64"),
                                     ("speedup_vs_tinyq_float", "× tinyq float")]))
    return rows


def main(args) -> dict:
    rng = np.random.default_rng(args.seed)
    number, repeat = (3, 3) if args.quick else (10, 7)
    (x_train, _), (x_test, _) = load_digits("train"), load_digits("test")
    rows = bench_model("digits convnet", models.convnet8(width=32, rng=rng), x_train[:256], x_test[:64],
                       args.threads, number, repeat)
    lenet_images = rng.uniform(0, 1, (320, 1, 28, 28)).astype(np.float32)
    rows += bench_model("LeNet-5 28x28", models.lenet5(rng=rng), lenet_images[:256], lenet_images[256:],
                        args.threads, number, repeat)
    payload = {"benchmark": "bench_interop", "batch": 64, "machine": common.machine_info(args.threads),
               "quick": args.quick, "rows": rows}
    common.write_json_atomic(args.out, payload)
    print(f"load average {payload['machine']['load_average_1_5_15min']}, threads {args.threads} -> {args.out}")
    return payload


if __name__ == "__main__":
    main(ARGS)
