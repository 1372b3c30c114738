"""Integer GEMM and integer-only inference speed: numba int8 kernels vs float32 BLAS, int32 NumPy, torch.

    python benchmarks/bench_int.py [--quick] [--threads 1] [--out PATH]

Measured in one process, one thread by default (BLAS, numba and torch pinned alike), candidates interleaved
(common.compare), medians reported as the ratio speed / NumPy float32 matmul of the same shape:
  GEMMs  256³, 512³, 1024³ and the GEMM shapes of LeNet-5 and the digits convnet at batch 64:
         NumPy float32 matmul (sgemm, the baseline), NumPy int32 matmul, the numba int8 kernel (raw codes,
         zero points 0), int_gemm with zero points (uint8 × int8 + correction), the exact float32-BLAS path,
         torch._int_mm (int8 × int8 → int32) when torch is installed;
  models integer-only LeNet-5 (1×28×28) and digits convnet (1×8×8) vs the float engine, batch 64.
It also disassembles the numba kernel and counts the vector instructions that matter (vpdpbusd = VNNI,
vpmaddubsw / vpmaddwd = AVX2 8/16-bit multiply-adds, vpmulld = 32-bit multiplies, tile* = AMX).
Writes benchmarks/results/bench_int.json atomically. Timings are noisy on a shared machine: read the
load average next to them.
"""
from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__.split("\n")[0], "bench_int.json",
                                     quick_help="few repeats, no 1024³ (smoke run)",
                                     threads_help="threads for BLAS/numba/torch (default 1)")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    common.pin_threads(ARGS.threads)

import numpy as np

import tinyq as tq
from tinyq import models
from tinyq.data import ArrayDataset, DataLoader
from tinyq.kernels.int_gemm import _raw_gemm_loops, int_gemm, int_gemm_blas
from tinyq.quant import quantize_ptq
from tinyq.quant.int_modules import to_integer

try:
    import torch
except ImportError:  # optional
    torch = None

# (M, K, N): square, then the im2col GEMMs of LeNet-5 and of the digits convnet (width 32) at batch 64
SHAPES = {"square 256": (256, 256, 256), "square 512": (512, 512, 512), "square 1024": (1024, 1024, 1024),
          "lenet conv1": (64 * 28 * 28, 25, 6), "lenet conv2": (64 * 10 * 10, 150, 16),
          "lenet fc1": (64, 400, 120), "convnet conv2": (64 * 8 * 8, 288, 32), "convnet conv3": (64 * 4 * 4, 288, 64)}
VECTOR_INSTRUCTIONS = ("vpdpbusd", "vpdpwssd", "vpmaddubsw", "vpmaddwd", "vpmulld", "vpmovsxbd", "vpmovzxbd",
                       "vpaddd", "tdpbusd", "tileloadd")


def gemm_candidates(m, k, n, rng):
    a8 = rng.integers(-127, 128, (m, k)).astype(np.int8)
    b8 = rng.integers(-127, 128, (k, n)).astype(np.int8)
    au8 = rng.integers(0, 256, (m, k)).astype(np.uint8)
    a32, b32 = a8.astype(np.int32), b8.astype(np.int32)
    af, bf = a8.astype(np.float32), b8.astype(np.float32)
    out = np.zeros((m, n), np.int32)

    def raw_kernel():
        out[:] = 0
        _raw_gemm_loops(a8, b8, out)

    candidates = {"numpy sgemm": lambda: af @ bf, "numpy int32": lambda: a32 @ b32,
                  "numba int8 (raw)": raw_kernel,
                  "int_gemm u8 zp": lambda: int_gemm(au8, b8, 7, 0),
                  "exact fp32-BLAS": lambda: int_gemm_blas(a8, b8)}
    if torch is not None and m > 16 and k % 8 == 0 and n % 8 == 0:
        ta, tb = torch.from_numpy(a8), torch.from_numpy(b8)
        candidates["torch _int_mm"] = lambda: torch._int_mm(ta, tb)
    return candidates


def model_candidates(rng):
    """{model: {"float engine": fn, "integer": fn}} at batch 64 (weights untrained: speed only)."""
    result = {}
    for name, model, shape in (("lenet5", models.lenet5(rng=rng), (1, 28, 28)),
                               ("convnet", models.convnet8(rng=rng), (1, 8, 8))):
        x = rng.random((64, *shape), dtype=np.float32)
        calibration = DataLoader(ArrayDataset(x, np.zeros(64, np.int64)), 64)
        model.eval()
        integer = to_integer(quantize_ptq(model, calibration, num_batches=1))
        codes = integer.quantize_input(x)

        def float_forward(model=model, x=x):
            with tq.no_grad():
                return model(tq.tensor(x))

        result[name] = {"float engine": float_forward, "integer (numba)": lambda i=integer, c=codes: i.logits(c),
                        "integer + quantize": lambda i=integer, x=x: i(x)}
    return result


def kernel_assembly() -> dict:
    """Counts of the interesting vector instructions in the numba raw int8 kernel, per signature. numba does
    not disassemble cached code, so the same Python function is compiled once more here without the cache."""
    import numba
    fresh = numba.njit(_raw_gemm_loops.py_func)
    for a_dtype in (np.int8, np.uint8):
        fresh(np.zeros((2, 8), a_dtype), np.zeros((8, 16), np.int8), np.zeros((2, 16), np.int32))
    counts = {}
    for signature, asm in fresh.inspect_asm().items():
        text = asm.lower()
        key = ",".join(str(t) for t in signature)
        counts[key] = {name: len(re.findall(rf"\b{name}\b", text)) for name in VECTOR_INSTRUCTIONS}
        counts[key]["ymm registers"] = len(re.findall(r"%ymm", text))
        counts[key]["zmm registers"] = len(re.findall(r"%zmm", text))
    return counts


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    if torch is not None:
        common.pin_torch_threads(torch, args.threads)
    repeat, number = (3, 1) if args.quick else (5, 1)
    rows = []
    for shape_name, (m, k, n) in SHAPES.items():
        if args.quick and shape_name == "square 1024":
            continue
        times = common.compare(gemm_candidates(m, k, n, rng), number=number, repeat=repeat, warmup=2)
        base = times["numpy sgemm"]["median_s"]
        for name, t in times.items():
            rows.append({"group": "gemm", "case": shape_name, "shape": f"{m}x{k}x{n}", "candidate": name,
                         "median_ms": round(t["median_s"] * 1e3, 3), "speed_vs_baseline": round(base / t["median_s"], 3)})
    for model_name, candidates in model_candidates(rng).items():
        times = common.compare(candidates, number=number, repeat=repeat, warmup=2)
        base = times["float engine"]["median_s"]
        for name, t in times.items():
            rows.append({"group": "model", "case": model_name, "shape": "batch 64", "candidate": name,
                         "median_ms": round(t["median_s"] * 1e3, 3), "speed_vs_baseline": round(base / t["median_s"], 3)})
    return {"benchmark": "bench_int", "quick": args.quick, "machine": common.machine_info(args.threads),
            "baseline": "gemm: NumPy float32 matmul of the same shape; model: float engine forward (no_grad)",
            "rows": rows, "numba_kernel_assembly": kernel_assembly()}


def main(args) -> int:
    result = run(args)
    machine = result["machine"]
    print(f"CPU: {machine['cpu_model']}  ISA: {' '.join(machine['isa_flags'])}  threads: {machine['threads']}  "
          f"load average: {machine.get('load_average_1_5_15min')}")
    print(common.format_table(result["rows"], [("case", "case"), ("shape", "shape"), ("candidate", "candidate"),
                                               ("median_ms", "median ms"), ("speed_vs_baseline", "speed / baseline")]))
    for signature, counts in result["numba_kernel_assembly"].items():
        print(f"numba kernel ({signature}): " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    common.write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
