"""Engine speed: per-op overhead, LeNet-5 and MLP training steps, tinyq vs PyTorch CPU.

    python benchmarks/bench_engine.py [--quick] [--threads N] [--out PATH]

Measured in one process, with the same thread count for NumPy's BLAS, numba and
PyTorch, timings interleaved (see common.compare) and reported as medians:
  (a) overhead of one op on tiny (4,) tensors with requires_grad (forward, graph recorded);
      target <= 1.5x PyTorch (without torch: shown against the bare NumPy call);
  (b) LeNet-5 forward + backward + SGD step, batch 64, 1x28x28;   target <= 2x PyTorch;
  (c) MLP 784-256-10 step, batch 128;                              target <= 1.2x PyTorch.
Prints a table and writes benchmarks/results/bench_engine.json atomically.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402  (must come before numpy: it pins the thread count)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (CI smoke run, < 30 s)")
    parser.add_argument("--threads", type=int, default=common.available_cpus(),
                        help="threads for BLAS/OpenMP/numba/torch (default: all available CPUs)")
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "bench_engine.json"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    common.pin_threads(ARGS.threads)

import numpy as np  # noqa: E402

import tinyq as tq  # noqa: E402
from tinyq import functional as F, models, optim  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # the oracle is optional
    torch = None

TARGETS = {"op": 1.5, "lenet5": 2.0, "mlp": 1.2}


# ------------------------------------------------------------------ (a) ops
def op_candidates(rng):
    """{op: {"tinyq": fn, "torch" or "numpy": fn}} on (4,) operands (and a (4, 4) matrix for matmul)."""
    a_np, b_np = rng.standard_normal(4, dtype=np.float32), rng.standard_normal(4, dtype=np.float32)
    w_np = rng.standard_normal((4, 4), dtype=np.float32)
    a, b, w = (tq.tensor(v, requires_grad=True) for v in (a_np, b_np, w_np))
    ops = {
        "add": {"tinyq": lambda: a + b},
        "mul": {"tinyq": lambda: a * b},
        "matmul (4,)@(4,4)": {"tinyq": lambda: a @ w},
        "relu": {"tinyq": lambda: F.relu(a)},
        "sum": {"tinyq": lambda: a.sum()},
    }
    if torch is not None:
        ta, tb, tw = (torch.tensor(v, requires_grad=True) for v in (a_np, b_np, w_np))
        baselines = [lambda: ta + tb, lambda: ta * tb, lambda: ta @ tw, lambda: torch.relu(ta), lambda: ta.sum()]
        name = "torch"
    else:
        baselines = [lambda: a_np + b_np, lambda: a_np * b_np, lambda: a_np @ w_np,
                     lambda: np.maximum(a_np, 0), lambda: a_np.sum()]
        name = "numpy"
    for entry, baseline in zip(ops.values(), baselines):
        entry[name] = baseline
    return ops


# ------------------------------------------------------------ (b), (c) steps
def tinyq_step(model, images, labels, lr=0.01):
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x = tq.tensor(images)

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
    return step


def torch_lenet5():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_mlp():
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def torch_step(model, tinyq_model, images, labels, lr=0.01):
    """The same architecture, starting from the tinyq model's weights (state dicts share names)."""
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tinyq_model.state_dict().items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return step


def numpy_mlp_step(images, labels, rng, lr=0.01, momentum=0.9):
    """A hand-written NumPy MLP step (784-256-10, ReLU, softmax cross-entropy, SGD momentum): the floor."""
    n = images.shape[0]
    x = images.reshape(n, -1)
    w1 = rng.uniform(-1 / 28, 1 / 28, (256, 784)).astype(np.float32)
    b1 = np.zeros(256, np.float32)
    w2 = rng.uniform(-1 / 16, 1 / 16, (10, 256)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    params = [w1, b1, w2, b2]
    velocity = [np.zeros_like(p) for p in params]
    onehot = np.eye(10, dtype=np.float32)[labels]

    def step():
        h = x @ w1.T + b1
        a = np.maximum(h, 0)
        logits = a @ w2.T + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=1, keepdims=True)
        g_logits = (p - onehot) / np.float32(n)
        grads = [None, None, g_logits.T @ a, g_logits.sum(0)]
        g_h = (g_logits @ w2) * (h > 0)
        grads[0], grads[1] = g_h.T @ x, g_h.sum(0)
        for p_, v, g in zip(params, velocity, grads):
            v *= np.float32(momentum)
            v += g
            p_ -= np.float32(lr) * v
    return step


# ---------------------------------------------------------------------- main
def ratio_row(name, times, baseline, target):
    ours = times["tinyq"]["median_s"]
    theirs = times[baseline]["median_s"]
    ratio = ours / theirs
    row = {"benchmark": name, "baseline": baseline, "tinyq_s": ours, "baseline_s": theirs,
           "ratio": ratio, "target": target}
    row["holds"] = bool(ratio <= target) if baseline == "torch" else None
    return row


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    if torch is not None:
        common.pin_torch_threads(torch, args.threads)
        torch.manual_seed(args.seed)
    quick = args.quick
    rows = []

    # (a) per-op overhead
    number, repeat = (300, 5) if quick else (3000, 15)
    for name, candidates in op_candidates(rng).items():
        times = common.compare(candidates, number=number, repeat=repeat, warmup=100)
        baseline = "torch" if "torch" in candidates else "numpy"
        rows.append(ratio_row(f"op {name}", times, baseline, TARGETS["op"]))

    # (b) LeNet-5 step
    images = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, size=64)
    lenet = models.lenet5(rng=rng)
    candidates = {"tinyq": tinyq_step(lenet, images, labels)}
    if torch is not None:
        candidates["torch"] = torch_step(torch_lenet5(), lenet, images, labels)
    number, repeat = (2, 5) if quick else (5, 15)
    times = common.compare(candidates, number=number, repeat=repeat, warmup=3)
    if torch is not None:
        rows.append(ratio_row("LeNet-5 step, batch 64", times, "torch", TARGETS["lenet5"]))
    else:
        rows.append({"benchmark": "LeNet-5 step, batch 64", "baseline": None,
                     "tinyq_s": times["tinyq"]["median_s"], "holds": None})

    # (c) MLP step
    images = rng.standard_normal((128, 784), dtype=np.float32)
    labels = rng.integers(0, 10, size=128)
    mlp = models.mlp((784, 256, 10), rng=rng)
    candidates = {"tinyq": tinyq_step(mlp, images, labels), "numpy": numpy_mlp_step(images, labels, rng)}
    if torch is not None:
        candidates["torch"] = torch_step(torch_mlp(), mlp, images, labels)
    number, repeat = (5, 5) if quick else (20, 15)
    times = common.compare(candidates, number=number, repeat=repeat, warmup=5)
    if torch is not None:
        rows.append(ratio_row("MLP 784-256-10 step, batch 128", times, "torch", TARGETS["mlp"]))
    rows.append(ratio_row("MLP 784-256-10 step, batch 128", times, "numpy", TARGETS["mlp"]))

    return {"benchmark": "bench_engine", "quick": quick, "machine": common.machine_info(args.threads),
            "rows": rows}


def print_report(result: dict) -> None:
    machine = result["machine"]
    print(f"CPU: {machine['cpu_model']}  ISA: {' '.join(machine['isa_flags'])}")
    print(f"threads: {machine['threads']} (of {machine['available_cpus']} available)  numpy {machine['numpy']} "
          f"({machine['numpy_blas']})  numba {machine['numba']}  torch {machine['torch']}"
          + ("  [NUMBA_DISABLE_JIT]" if machine["numba_jit_disabled"] else ""))
    load = machine.get("load_average_1_5_15min")
    if load is not None:
        print(f"load average (1 min) at the end: {load[0]:.2f}"
              + ("  WARNING: other processes compete for the CPUs; timings are inflated and noisy"
                 if load[0] > machine["available_cpus"] + 0.5 else ""))
    table = []
    for row in result["rows"]:
        small = row["tinyq_s"] < 1e-3
        unit, scale = ("us", 1e6) if small else ("ms", 1e3)
        holds = {True: "yes", False: "NO", None: "-"}[row.get("holds")]
        table.append({
            "benchmark": row["benchmark"],
            "tinyq": f"{row['tinyq_s'] * scale:.2f} {unit}",
            "baseline": (f"{row['baseline']} {row['baseline_s'] * scale:.2f} {unit}" if row.get("baseline") else "-"),
            "ratio": f"{row['ratio']:.2f}x" if "ratio" in row else "-",
            "target": f"<= {row['target']}x" if row.get("baseline") == "torch" else "-",
            "holds": holds,
        })
    print(common.format_table(table, [("benchmark", "benchmark"), ("tinyq", "tinyq"), ("baseline", "baseline"),
                                      ("ratio", "ratio"), ("target", "target"), ("holds", "holds")]))


def main(args) -> int:
    result = run(args)
    print_report(result)
    path = common.write_json_atomic(args.out, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
