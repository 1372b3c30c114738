"""Engine speed and memory: training steps of LeNet-5, the digits convnet and an MLP, tinyq vs PyTorch CPU.

    python benchmarks/bench_engine.py [--quick] [--threads N] [--out PATH]

Measured in one process, with the same thread count for NumPy's BLAS, numba and
PyTorch, timings interleaved (see common.compare) and reported as medians:
  (a) overhead of one op on tiny (4,) tensors with requires_grad (forward, graph recorded);
  (b) a train step (forward + cross-entropy + backward + SGD momentum) of LeNet-5 (1x28x28),
      the digits convnet with BatchNorm (models.convnet8, 1x8x8) and the MLP 784-256-10, at
      batch 16, 64 and 256 (MLP also 128), as the ratio tinyq / torch;
  (c) where a step's time goes, per component (conv forward / backward, pool, BatchNorm,
      linear, activation, loss, optimizer, graph = the rest), for tinyq and for torch;
  (d) in a fresh subprocess per engine and model: minor page faults per steady-state step
      (resource.getrusage) and the peak resident memory a step adds (VmHWM - VmRSS before
      the step), for tinyq with and without the malloc tuning of tinyq/allocator.py (and, at batch
      256, with Conv2d keeping its patch matrices: convolution.RECOMPUTE_PATCHES = False), and torch.
Prints tables and writes benchmarks/results/bench_engine.json atomically. --quick (CI) runs
batch 64 (MLP 128) for (b) and (c), and LeNet-5 at batch 256 for (d).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import common  # noqa: E402  (must come before numpy: it pins the thread count)


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__.split("\n")[0], "bench_engine.json",
                                     quick_help="fewer sizes and repeats (CI smoke run, < 1 min)",
                                     threads_help="threads for BLAS/OpenMP/numba/torch (default: all available CPUs)",
                                     threads_default=common.available_cpus())
    parser.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (steadier on a shared machine; use with "
                             "--threads 1)")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)   # MODEL:BATCH:ENGINE, used by (d)
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    common.pin_threads(ARGS.threads)

import numpy as np  # noqa: E402

import tinyq as tq  # noqa: E402
from tinyq import allocator, convolution, functional as F, models, optim  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # the oracle is optional
    torch = None

import engine_breakdown  # noqa: E402

TARGETS = {"op": 1.5, "lenet5": 1.1, "convnet": 1.5, "mlp": 0.9, "faults": 0, "lenet5_memory": 1.5}
MODELS = {   # name: (tinyq builder, input shape, torch builder name)
    "lenet5": (lambda rng: models.lenet5(rng=rng), (1, 28, 28)),
    "convnet": (lambda rng: models.convnet8(rng=rng), (1, 8, 8)),
    "mlp": (lambda rng: models.mlp((784, 256, 10), rng=rng), (784,)),
}


# ------------------------------------------------------------------ (a) ops
def op_candidates(rng):
    """{op: {"tinyq": fn, "torch" or "numpy": fn}} on (4,) operands (and a (4, 4) matrix for matmul)."""
    a_np, b_np = rng.standard_normal(4, dtype=np.float32), rng.standard_normal(4, dtype=np.float32)
    w_np = rng.standard_normal((4, 4), dtype=np.float32)
    a, b, w = (tq.tensor(v, requires_grad=True) for v in (a_np, b_np, w_np))
    ops = {"add": {"tinyq": lambda: a + b}, "mul": {"tinyq": lambda: a * b},
           "matmul (4,)@(4,4)": {"tinyq": lambda: a @ w}, "relu": {"tinyq": lambda: F.relu(a)},
           "sum": {"tinyq": lambda: a.sum()}}
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


# ------------------------------------------------------------ training steps
def tinyq_step(model, images, labels, lr=0.01, loss_region=None):
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x = tq.tensor(images)

    def step():
        optimizer.zero_grad()
        logits = model(x)
        if loss_region is None:
            loss = F.cross_entropy(logits, labels)
        else:
            with loss_region():
                loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
    step.optimizer = optimizer
    return step


def torch_model(name):
    nn = torch.nn
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if name == "convnet":
        def block(c_in, c_out, stride):
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        return nn.Sequential(*block(1, 32, 1), *block(32, 32, 1), *block(32, 64, 2), *block(64, 64, 1),
                             nn.Conv2d(64, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def torch_step(model, tinyq_model, images, labels, lr=0.01):
    """The same architecture, starting from the tinyq model's weights (state dicts share names)."""
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tinyq_model.state_dict().items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return step


def make_steps(name, batch, seed, engines=("tinyq", "torch")):
    """{engine: step function} for model `name` at `batch`, same weights and data for every engine."""
    rng = np.random.default_rng(seed)
    build, shape = MODELS[name]
    images = rng.standard_normal((batch, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)
    model = build(rng)
    steps = {"tinyq": tinyq_step(model, images, labels)} if "tinyq" in engines else {}
    if "torch" in engines and torch is not None:
        steps["torch"] = torch_step(torch_model(name), model, images, labels)
    return steps, model, images, labels


def keeping_patches(step):
    """step, run with convolution.RECOMPUTE_PATCHES = False (Conv2d keeps every patch matrix for backward)."""
    def step_keeping_patches():
        convolution.RECOMPUTE_PATCHES = False
        try:
            step()
        finally:
            convolution.RECOMPUTE_PATCHES = True
    return step_keeping_patches


def ratio_row(name, times, baseline, target):
    ours, theirs = times["tinyq"]["median_s"], times[baseline]["median_s"]
    return {"benchmark": name, "baseline": baseline, "tinyq_s": ours, "baseline_s": theirs,
            "ratio": ours / theirs, "target": target,
            "holds": bool(ours / theirs <= target) if (baseline == "torch" and target is not None) else None}


# ----------------------------------------------------------- (d) subprocess probe
def probe(spec: str, seed: int, steps: int = 10) -> dict:
    """In this (fresh) process: peak memory a step adds, minor page faults and time per steady-state step."""
    name, batch, engine = spec.split(":")
    if engine == "tinyq-keep-patches":                          # Conv2d keeps its patch matrix for backward
        convolution.RECOMPUTE_PATCHES, engine = False, "tinyq"
    make_steps(name, 2, seed, (engine,))[0][engine]()          # load / compile kernels outside the measurement
    step = make_steps(name, int(batch), seed, (engine,))[0][engine]
    import gc
    gc.collect()
    before = common.memory_kib()["rss"]
    reset = common.reset_peak()
    for _ in range(3):
        step()
    peak = common.memory_kib()["peak"]
    faults, start = common.minor_faults(), common.time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = common.time.perf_counter() - start
    return {"probe": spec, "step_peak_mib": (peak - before) / 1024 if reset else None,
            "faults_per_step": (common.minor_faults() - faults) / steps, "step_s": elapsed / steps,
            "malloc_tuned": allocator.applied}


def run_probe(spec, args, tuned=True) -> dict:
    env = dict(os.environ, TINYQ_MALLOC_TUNING="1" if tuned else "0")
    command = [sys.executable, os.path.abspath(__file__), "--probe", spec, "--threads", str(args.threads),
               "--seed", str(args.seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        raise RuntimeError(f"probe {spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- main
def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    if torch is not None:
        common.pin_torch_threads(torch, args.threads)
        torch.manual_seed(args.seed)
    quick = args.quick
    result = {"benchmark": "bench_engine", "quick": quick, "clock": args.clock, "malloc_tuned": allocator.applied,
              "targets": TARGETS, "rows": [], "breakdown": {}, "memory": []}

    number, repeat = (200, 3) if quick else (3000, 15)                       # (a)
    for name, candidates in op_candidates(rng).items():
        times = common.compare(candidates, number=number, repeat=repeat, warmup=100, clock=common.CLOCKS[args.clock])
        baseline = "torch" if "torch" in candidates else "numpy"
        result["rows"].append(ratio_row(f"op {name}", times, baseline, TARGETS["op"]))

    sizes = {"lenet5": (64,), "convnet": (64,), "mlp": (128,)} if quick else \
        {"lenet5": (16, 64, 256), "convnet": (16, 64, 256), "mlp": (16, 64, 128, 256)}
    for name, batches in sizes.items():                                      # (b)
        for batch in batches:
            steps, *_ = make_steps(name, batch, args.seed)
            if name != "mlp" and not quick:                                   # the same step, patches kept
                steps["tinyq_keep_patches"] = keeping_patches(steps["tinyq"])
            repeat = 5 if quick else 11
            number = max(1, (1 if quick else 4) * 64 // batch) * (5 if name == "mlp" else 1)
            times = common.compare(steps, number=number, repeat=repeat, warmup=3, clock=common.CLOCKS[args.clock])
            label = f"{name} step, batch {batch}"
            if torch is not None:
                result["rows"].append(ratio_row(label, times, "torch", TARGETS[name]))
                if "tinyq_keep_patches" in times:
                    times_keep = dict(times, tinyq=times["tinyq_keep_patches"])
                    result["rows"].append(ratio_row(label + " (RECOMPUTE_PATCHES=False)", times_keep, "torch", None))
            else:
                result["rows"].append({"benchmark": label, "baseline": None, "tinyq_s": times["tinyq"]["median_s"]})

    for name in MODELS:                                                      # (c)
        batch = 128 if name == "mlp" else 64
        steps, model, images, labels = make_steps(name, batch, args.seed)
        result["breakdown"][f"{name}, batch {batch}"] = engine_breakdown.breakdown(
            model, images, labels, tinyq_step, steps.get("torch"), torch, repeat=2 if quick else 10)

    specs = ["lenet5:256"] if quick else \
        [f"{m}:{b}" for m, bs in (("lenet5", (16, 64, 256)), ("convnet", (64, 256)), ("mlp", (128, 256)))
         for b in bs]
    for spec in specs:                                                       # (d)
        row = {"config": spec, "tinyq": run_probe(spec + ":tinyq", args),
               "tinyq_untuned": run_probe(spec + ":tinyq", args, tuned=False)}
        if spec.startswith(("lenet5", "convnet")) and spec.endswith(":256"):
            row["tinyq_keep_patches"] = run_probe(spec + ":tinyq-keep-patches", args)
        if torch is not None:
            row["torch"] = run_probe(spec + ":torch", args)
        result["memory"].append(row)

    result["machine"] = common.machine_info(args.threads)                   # load average at the end
    return result


def print_report(result: dict) -> None:
    machine = result["machine"]
    print(f"CPU: {machine['cpu_model']}  ISA: {' '.join(machine['isa_flags'])}")
    print(f"threads: {machine['threads']} (of {machine['available_cpus']} available)  numpy {machine['numpy']} "
          f"({machine['numpy_blas']})  numba {machine['numba']}  torch {machine['torch']}  "
          f"malloc tuning: {'on' if result['malloc_tuned'] else 'off'}  clock: {result['clock']}"
          + ("  [NUMBA_DISABLE_JIT]" if machine["numba_jit_disabled"] else ""))
    load = machine.get("load_average_1_5_15min")
    if load is not None:
        print(f"load average 1/5/15 min at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
              + ("  WARNING: other processes compete for the CPUs; timings are inflated and noisy"
                 if load[0] > machine["available_cpus"] + 0.5 else ""))
    table = []
    for row in result["rows"]:
        unit, scale = ("us", 1e6) if row["tinyq_s"] < 1e-3 else ("ms", 1e3)
        table.append({
            "benchmark": row["benchmark"], "tinyq": f"{row['tinyq_s'] * scale:.2f} {unit}",
            "baseline": (f"{row['baseline']} {row['baseline_s'] * scale:.2f} {unit}" if row.get("baseline") else "-"),
            "ratio": f"{row['ratio']:.2f}x" if "ratio" in row else "-",
            "target": f"<= {row['target']}x" if row.get("target") is not None else "-",
            "holds": {True: "yes", False: "NO", None: "-"}[row.get("holds")]})
    print(common.format_table(table, [(k, k) for k in ("benchmark", "tinyq", "baseline", "ratio", "target", "holds")]))
    for label, parts in result["breakdown"].items():
        print(f"\nwhere the time of a step goes (ms per step, profiled): {label}")
        print(engine_breakdown.format_breakdown(parts))
    print("\nmemory and page faults per steady-state step (fresh process per row; peak = VmHWM - VmRSS before)")
    table = []
    for row in result["memory"]:
        cell = {"config": row["config"]}
        for engine in ("tinyq", "tinyq_untuned", "tinyq_keep_patches", "torch"):
            if engine in row:
                probe_result = row[engine]
                peak = probe_result["step_peak_mib"]
                cell[engine] = (f"{peak:.1f} MiB, " if peak is not None else "") + \
                    f"{probe_result['faults_per_step']:.0f} faults"
        if "torch" in row and row["torch"]["step_peak_mib"]:
            cell["memory ratio"] = f"{row['tinyq']['step_peak_mib'] / row['torch']['step_peak_mib']:.2f}x"
        table.append(cell)
    print(common.format_table(table, [("config", "model:batch"), ("tinyq", "tinyq"),
                                      ("tinyq_untuned", "tinyq TINYQ_MALLOC_TUNING=0"),
                                      ("tinyq_keep_patches", "tinyq RECOMPUTE_PATCHES=False"), ("torch", "torch"),
                                      ("memory ratio", "peak tinyq/torch")]))


def main(args) -> int:
    if args.probe:
        print(json.dumps(probe(args.probe, args.seed)))
        return 0
    result = run(args)
    print_report(result)
    path = common.write_json_atomic(args.out, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
