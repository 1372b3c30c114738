"""Unstructured sparsity on this CPU: CSR × dense (numba) against dense BLAS matmul, and where they cross.

    python benchmarks/bench_sparse.py [--quick] [--threads N] [--size 1024] [--batch 64] [--out PATH]

A pruned (M, K) weight times a dense (K, batch) activation, float32, at sparsity
0, 50, 60, 70, 80, 90, 95 and 99 %. Dense: NumPy's BLAS on the full matrix (zeros included).
CSR: tinyq.kernels.sparse.csr_matmul (numba, one thread: the kernel has no parallel loop,
so the default --threads 1 makes it a like-for-like comparison; with more threads the BLAS
gets faster and the crossover moves to higher sparsity). Timings are interleaved medians
(common.compare). The crossover is the lowest measured sparsity at which CSR is faster;
storage sizes (dense, CSR, bitmask, in bits with their indices) are printed beside.
Writes benchmarks/results/bench_sparse.json atomically.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common

SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__.split("\n")[0], "bench_sparse.json",
                                     quick_help="few repeats (CI smoke run)",
                                     threads_help="BLAS/numba threads (default 1: like for like)")
    parser.add_argument("--size", type=int, default=1024, help="the weight is size × size")
    parser.add_argument("--batch", type=int, default=64, help="columns of the dense operand")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    common.pin_threads(ARGS.threads)

import numpy as np

from tinyq.kernels import sparse


def pruned_matrix(rng, size: int, sparsity: float) -> np.ndarray:
    """A size × size float32 matrix with exactly round(sparsity · size²) zeros at random positions."""
    weight = rng.standard_normal((size, size), dtype=np.float32)
    weight.ravel()[rng.permutation(weight.size)[:round(sparsity * weight.size)]] = 0
    return weight


def measure(size: int, batch: int, sparsities, quick: bool, seed: int) -> list:
    rng = np.random.default_rng(seed)
    activations = rng.standard_normal((size, batch), dtype=np.float32)
    rows = []
    for sparsity in sparsities:
        weight = pruned_matrix(rng, size, sparsity)
        csr = sparse.csr_encode(weight)
        expected = weight.astype(np.float64) @ activations.astype(np.float64)
        got = sparse.csr_matmul(csr.values, csr.col_index, csr.row_ptr, activations)
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-3):
            raise RuntimeError(f"csr_matmul disagrees with the dense product at sparsity {sparsity}")
        times = common.compare({"dense": lambda w=weight: w @ activations,
                                "csr": lambda c=csr: sparse.csr_matmul(c.values, c.col_index, c.row_ptr,
                                                                       activations)},
                               number=3 if quick else 10, repeat=3 if quick else 7)
        dense_s, csr_s = times["dense"]["median_s"], times["csr"]["median_s"]
        rows.append({"sparsity": sparsity, "dense_ms": dense_s * 1e3, "csr_ms": csr_s * 1e3,
                     "speedup": dense_s / csr_s,
                     "dense_bits": sparse.dense_bits(weight.shape), "csr_bits": sparse.csr_bits(csr),
                     "bitmask_bits": sparse.bitmask_bits(sparse.bitmask_encode(weight))})
    return rows


def crossover(rows: list):
    """The lowest measured sparsity at which CSR beats dense (None if it never does)."""
    faster = [row["sparsity"] for row in rows if row["speedup"] > 1.0]
    return min(faster) if faster else None


def main(args) -> dict:
    rows = measure(args.size, args.batch, SPARSITIES, args.quick, args.seed)
    cross = crossover(rows)
    print(f"CSR x dense vs dense BLAS: ({args.size} x {args.size}) @ ({args.size} x {args.batch}), float32, "
          f"{args.threads} thread(s)")
    print(common.format_table(
        [{**r, "sparsity": f"{r['sparsity']:.0%}", "dense_ms": f"{r['dense_ms']:.3f}", "csr_ms": f"{r['csr_ms']:.3f}",
          "speedup": f"{r['speedup']:.2f}x", "csr_ratio": f"{r['csr_bits'] / r['dense_bits']:.3f}",
          "bitmask_ratio": f"{r['bitmask_bits'] / r['dense_bits']:.3f}"} for r in rows],
        [("sparsity", "sparsity"), ("dense_ms", "dense ms"), ("csr_ms", "CSR ms"),
         ("speedup", "dense/CSR time"), ("csr_ratio", "CSR size/dense"), ("bitmask_ratio", "bitmask size/dense")]))
    print("crossover: " + (f"CSR is faster from {cross:.0%} sparsity on (among those measured)" if cross is not None
                           else "CSR never beat dense BLAS at the measured sparsities"))
    machine = common.machine_info(args.threads)
    load = machine.get("load_average_1_5_15min")
    if load is not None:
        print(f"load average (1 min): {load[0]:.2f} on {machine['available_cpus']} CPUs")
    payload = {"benchmark": "bench_sparse", "quick": args.quick, "size": args.size, "batch": args.batch,
               "machine": machine, "rows": rows, "crossover_sparsity": cross}
    common.write_json_atomic(args.out, payload)
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main(ARGS)
