"""The end-to-end compression report: teacher → distilled student → pruned → shared / integer-only.

Every stage is a model; for each one this run measures
- test accuracy on the whole test split;
- stored size in bytes: the bits each tensor actually needs, summed, rounded up to whole bytes once:
  float32 values, pruned weights in the smaller of CSR and bitmask form (tinyq.sharing.layer_bits),
  shared weights as codebook + Huffman-coded indices (tinyq.sharing.storage_bits), integer models with
  int8 or packed int4 weight codes (sparse when smaller), int32 biases and the requantization constants
  (tinyq.quant.int_modules.stored_bits);
- latency: the median wall time of one forward pass over a batch, after warm-up, on this CPU;
- the compression ratio against the fp32 teacher and against the fp32 student.

    records = run()                       # one record per stage
    fig = plot(records)                   # accuracy vs bytes, the Pareto front marked

The integer stages run tinyq's integer-only inference (int8 × int8 → int32, fixed-point requantization);
they are what a deployment would run, so their accuracy is that of the integers, not of fake-quant.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np

import tinyq as tq
from tinyq import distill, models, prune, sharing
from tinyq.data import ArrayDataset, DataLoader
from tinyq.experiments.distillation import (
    load_data,
    predict,
    train,
    train_teacher,
)
from tinyq.quant import QuantConfig, quantize_ptq
from tinyq.quant.int_modules import IntegerModel, flat_layers, to_integer
from tinyq.quant.int_modules import stored_bits as integer_stored_bits
from tinyq.train import fast_mode

COLUMNS = ["stage", "test_accuracy", "stored_bytes", "ratio_vs_teacher", "ratio_vs_student", "latency_ms",
           "parameters", "nonzero", "engine"]


# ------------------------------------------------------------------ accounting and measurement (chapter 13)
def pareto_front(sizes, accuracies) -> list[int]:
    """Indices i of the points no other point beats: no j with size_j ≤ size_i and acc_j ≥ acc_i, one strictly.
    Sorted by size (smallest first)."""
    sizes, accuracies = np.asarray(sizes, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    if sizes.shape != accuracies.shape or sizes.ndim != 1:
        raise ValueError(f"pareto_front expects two 1-D sequences of one length, got {sizes.shape} and "
                         f"{accuracies.shape}")
    ### BEGIN SOLUTION 13.1
    front = []
    for i in range(len(sizes)):
        no_larger = (sizes <= sizes[i]) & (accuracies >= accuracies[i])
        strictly = (sizes < sizes[i]) | (accuracies > accuracies[i])
        if not np.any(no_larger & strictly):
            front.append(i)
    front.sort(key=lambda i: (sizes[i], -accuracies[i]))
    ### END SOLUTION
    return front


def median_latency(function, warmup: int = 2, repeats: int = 7, clock=time.perf_counter) -> float:
    """t = median over `repeats` timed calls of function() after `warmup` untimed calls (seconds)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"median_latency expects warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    ### BEGIN SOLUTION 13.2
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    latency = float(np.median(times))
    ### END SOLUTION
    return latency


def compression_ratio(baseline_bits: int, stored_bits) -> tuple[int, float]:
    """(bytes, ratio): bytes = ⌈Σ stored_bits / 8⌉ (rounded once, for the whole model); ratio = ⌈baseline/8⌉ / bytes."""
    bits = [int(b) for b in np.atleast_1d(stored_bits)]
    if any(b < 0 for b in bits) or baseline_bits < 0:
        raise ValueError(f"bit counts must be >= 0, got {bits} and baseline {baseline_bits}")
    ### BEGIN SOLUTION 13.3
    stored_bytes = -(-sum(bits) // 8)
    ratio = math.ceil(baseline_bits / 8) / stored_bytes if stored_bytes else math.inf
    ### END SOLUTION
    return stored_bytes, ratio


def integer_model_bits(model: IntegerModel, source: tq.nn.Module, weight_bits: int) -> int:
    """Bits of an integer model: its biases and requantization constants (int_modules.stored_bits) plus, per
    layer, the weight codes dense (int_modules' packing) or sparse (positions + nonzero codes), whichever is
    smaller. `source` is the float model the codes came from (zeros where it was pruned)."""
    accounting = integer_stored_bits(model)
    dense_weights = accounting["weights"]
    sparse_weights = 0
    for _, module in flat_layers(source):
        if isinstance(module, (tq.nn.Linear, tq.nn.Conv2d)):
            record = sharing.layer_bits(module.weight.data, value_bits=weight_bits)
            sparse_weights += min(record["dense_bits"], record["sparse_bits"])
    return accounting["biases"] + accounting["qparams"] + min(dense_weights, sparse_weights)


def run_stages(model, stages, measure) -> list[dict]:
    """Apply the stages in order, each to the model the previous one left: records = [{"stage": name, **measure(m)}].

    stages: [(name, transform)] with transform(model) -> model (a transform may copy, or return what it got).
    """
    ### BEGIN SOLUTION 13.4
    records = []
    for name, transform in stages:
        model = transform(model)
        records.append({"stage": name, **measure(model)})
    ### END SOLUTION
    return records


# ------------------------------------------------------------------ the pipeline
def float_bits(model) -> int:
    """Σ over parameters and float buffers of the bits stored (sparse or shared where that is smaller)."""
    return int(sum(r["stored_bits"] for r in sharing.storage_bits(model)))


def _forward(model, x):
    if isinstance(model, IntegerModel):
        return model.logits(model.quantize_input(x))
    with tq.no_grad(), model.evaluating():
        return model(tq.tensor(x)).data


def run(dataset: str = "digits", *, seed: int = 0, teacher_epochs: int | None = None,
        student_epochs: int | None = None, hidden: int = 32, temperature: float = 2.0, alpha: float = 0.5,
        sparsity: float = 0.8, agp_steps: int = 5, clusters: int = 16, batch_size: int = 256,
        limit: int | None = None, progress: bool | None = False) -> list[dict]:
    """One record per stage; every number measured in this call (see the module docstring)."""
    distill.check_temperature(temperature)
    distill.check_alpha(alpha)
    fast = fast_mode()
    teacher_epochs = teacher_epochs or (2 if fast else 8)
    student_epochs = student_epochs or (6 if fast else 30)
    data = load_data(dataset, limit=limit if limit is not None else (400 if fast else None))
    x_train, y_train, x_test, y_test = data
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 3]).spawn(4)]
    batch = x_test[:batch_size]
    started = time.perf_counter()

    teacher, _ = train_teacher(data, epochs=teacher_epochs, seed=seed, progress=progress)
    teacher_logits = predict(teacher, x_train)

    def distilled(_):
        student = models.mlp((int(np.prod(x_train.shape[1:])), hidden, 10), rng=rngs[0])
        train(student, x_train, y_train, student_epochs, teacher_logits=teacher_logits, temperature=temperature,
              alpha=alpha, rng=rngs[1])
        return student

    def pruned(student):
        student = copy.deepcopy(student)
        retrain_epochs = max(1, student_epochs // (agp_steps + 1))
        prune.agp(student, sparsity, agp_steps, lambda m: train(
            m, x_train, y_train, retrain_epochs, lr=0.02, teacher_logits=teacher_logits, temperature=temperature,
            alpha=alpha, rng=rngs[2]))
        return prune.remove_all(student)

    def shared(student):
        return sharing.share_weights(copy.deepcopy(student), clusters)

    def integer(bits):
        def convert(student):
            config = QuantConfig.uniform(8, weight_bits=bits)
            calibration = DataLoader(ArrayDataset(x_train, y_train), batch_size=256)
            qsim = quantize_ptq(copy.deepcopy(student), calibration, config, num_batches=4)
            integer_model = to_integer(qsim)
            sources[id(integer_model)] = (student, bits)      # the float weights the codes came from
            return integer_model
        return convert

    teacher_bits = float_bits(teacher)
    student_bits, sources = {}, {}

    def measure(model) -> dict:
        if isinstance(model, IntegerModel):
            source, weight_bits = sources[id(model)]
            bits = integer_model_bits(model, source, weight_bits)
            engine = f"integer-only (int{weight_bits} weights, int8 activations, int32 accumulators)"
        else:
            bits, source = float_bits(model), model
            engine = "float32" + (", shared weights" if sharing.shared_layers(model) else "")
        student_bits.setdefault("fp32", bits)
        stored_bytes, ratio_teacher = compression_ratio(teacher_bits, bits)
        _, ratio_student = compression_ratio(student_bits["fp32"], bits)
        weights = [m.weight.data for _, m in flat_layers(source) if isinstance(m, (tq.nn.Linear, tq.nn.Conv2d))]
        logits = _forward(model, x_test)
        return {"test_accuracy": float(np.mean(np.argmax(logits, axis=1) == y_test)), "stored_bytes": stored_bytes,
                "ratio_vs_teacher": ratio_teacher, "ratio_vs_student": ratio_student,
                "latency_ms": 1e3 * median_latency(lambda: _forward(model, batch)),
                "parameters": int(sum(p.size for p in source.parameters())),
                "nonzero": int(sum(np.count_nonzero(w) for w in weights)), "engine": engine}

    teacher_record = {"stage": "teacher fp32 (CNN)", **measure(teacher)}
    student_bits.clear()
    records = [teacher_record]
    pruned_student = {}

    def keep(model):
        pruned_student["model"] = model
        return model

    records += run_stages(None, [("student fp32 (distilled MLP)", distilled),
                                 (f"pruned {sparsity:.0%} (AGP)", lambda m: keep(pruned(m))),
                                 (f"pruned + shared k={clusters} (Huffman)", shared)], measure)
    records += run_stages(pruned_student["model"], [("pruned + int8 integer-only", integer(8))], measure)
    records += run_stages(pruned_student["model"], [("pruned + int4 weights integer-only", integer(4))], measure)
    teacher_record["ratio_vs_student"] = teacher_record["stored_bytes"] and (
        math.ceil(student_bits["fp32"] / 8) / teacher_record["stored_bytes"])
    seconds = time.perf_counter() - started
    for r in records:
        r.update(dataset=dataset, seed=seed, batch_size=len(batch), total_seconds=seconds)
    return records


def plot(records: list[dict]):
    """Test accuracy against stored bytes (log scale), every stage labelled, the Pareto front joined."""
    from matplotlib.figure import Figure

    import tinyq.experiments.plotting  # noqa: F401  (selects a headless matplotlib backend)
    fig = Figure(figsize=(7, 4.5), constrained_layout=True)
    ax = fig.subplots()
    sizes = [r["stored_bytes"] for r in records]
    accuracies = [r["test_accuracy"] for r in records]
    ax.scatter(sizes, accuracies, color="tab:blue", zorder=3)
    for r in records:
        ax.annotate(r["stage"], (r["stored_bytes"], r["test_accuracy"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    front = pareto_front(sizes, accuracies)
    ax.plot([sizes[i] for i in front], [accuracies[i] for i in front], color="tab:red", label="Pareto front")
    ax.set(xscale="log", xlabel="stored size (bytes)", ylabel="test accuracy", title="accuracy vs size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig
