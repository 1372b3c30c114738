"""Trusted checks of chapter 01 (tensors and autograd): exercises 1.1-1.4.

Values are small integers stored as float64, so every sum and product is exact and a correct
gradient computed in any order equals the reference's exactly (rtol = atol = 0).
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register
from tinyq.grading.checks._draw import broadcast_pair, small_integers

HERE = "tinyq.grading.checks.ch01"


# ---- 1.1 unbroadcast
def draw_unbroadcast(rng):
    ndim = int(rng.integers(1, 5))
    full = tuple(int(n) for n in rng.integers(2, 5, size=ndim))
    dropped = int(rng.integers(0, ndim + 1))            # leading axes broadcasting prepended (all: a scalar)
    target = tuple(1 if rng.random() < 0.4 else n for n in full[dropped:])   # size-1 axes it stretched
    return {"grad": small_integers(rng, full), "shape": np.array(target, dtype=np.int64)}


def probe_unbroadcast(grad, shape):
    from tinyq.function import unbroadcast
    return {"result": np.asarray(unbroadcast(grad.copy(), tuple(int(n) for n in shape)))}


# ---- 1.2 / 1.3: a Function's backward called directly (no graph walk)
def _direct_backward(function, arrays, grad):
    from tinyq.tensor import Tensor
    ctx = function()
    ctx.inputs = tuple(Tensor(a.copy(), requires_grad=True) for a in arrays)
    function.forward(ctx, *[a.copy() for a in arrays])
    grads = function.backward(ctx, grad.copy())
    return grads if isinstance(grads, tuple) else (grads,)


def draw_mul(rng):
    shape_a, shape_b = broadcast_pair(rng)
    if rng.random() < 0.5:
        shape_a, shape_b = shape_b, shape_a
    out = np.broadcast_shapes(shape_a, shape_b)
    return {"a": small_integers(rng, shape_a), "b": small_integers(rng, shape_b), "grad": small_integers(rng, out)}


def probe_mul(a, b, grad):
    from tinyq import ops
    grad_a, grad_b = _direct_backward(ops.Mul, [a, b], grad)
    return {"grad_a": np.asarray(grad_a), "grad_b": np.asarray(grad_b)}


def draw_matmul(rng):
    m, k, n = (int(v) for v in rng.integers(1, 5, size=3))
    batch = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3))))
    batch_b = tuple(1 if rng.random() < 0.4 else v for v in batch)[int(rng.integers(0, len(batch) + 1)):]
    if rng.random() < 0.5:
        batch, batch_b = batch_b, batch
    shape_a, shape_b = batch + (m, k), batch_b + (k, n)
    out = np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (m, n)
    return {"a": small_integers(rng, shape_a), "b": small_integers(rng, shape_b), "grad": small_integers(rng, out)}


def probe_matmul(a, b, grad):
    from tinyq import ops
    grad_a, grad_b = _direct_backward(ops.MatMul, [a, b], grad)
    return {"grad_a": np.asarray(grad_a), "grad_b": np.asarray(grad_b)}


# ---- 1.4 topological order: properties of the order on a random graph with shared nodes and a deep chain
def draw_graph(rng):
    leaves = int(rng.integers(2, 5))
    steps = int(rng.integers(4, 12))
    # each step combines two earlier nodes (leaves or results): op 0 = add, 1 = mul, 2 = sub
    program = np.array([[rng.integers(0, 3), rng.integers(0, leaves + s), rng.integers(0, leaves + s)]
                        for s in range(steps)], dtype=np.int64)
    constant = rng.random(leaves) < 0.25             # leaves that do not require grad
    constant[0] = False
    return {"program": program, "constant_leaves": constant, "chain": int(rng.integers(1100, 1400))}


def probe_graph(program, constant_leaves, chain):
    import tinyq as tq
    from tinyq.tensor import topological_order
    nodes = [tq.tensor(np.full(2, float(i + 1)), requires_grad=not bool(c)) for i, c in enumerate(constant_leaves)]
    for op, i, j in program:
        a, b = nodes[i], nodes[j]
        nodes.append(a + b if op == 0 else a * b if op == 1 else a - b)
    y = nodes[-1] + nodes[0]
    for _ in range(chain):                           # deep: a recursive walk would hit the recursion limit
        y = -y
    order = topological_order(y)
    ids = [id(t) for t in order]
    position = {key: k for k, key in enumerate(ids)}
    after_inputs = all(position[id(p)] < position[id(t)] for t in order if t._ctx is not None
                       for p in t._ctx.inputs if isinstance(p, tq.Tensor) and p.requires_grad)
    reachable, stack = set(), [y]
    while stack:
        t = stack.pop()
        if id(t) in reachable or not t.requires_grad:
            continue
        reachable.add(id(t))
        if t._ctx is not None:
            stack.extend(p for p in t._ctx.inputs if isinstance(p, tq.Tensor))
    return {"each_node_once": len(ids) == len(set(ids)), "every_node_after_its_inputs": bool(after_inputs),
            "covers_every_node_needing_grad": set(ids) == reachable, "root_last": bool(ids) and ids[-1] == id(y)}


register(Check(exercise="1.1", draw=f"{HERE}:draw_unbroadcast", probe=f"{HERE}:probe_unbroadcast", cases=8))
register(Check(exercise="1.2", draw=f"{HERE}:draw_mul", probe=f"{HERE}:probe_mul", cases=6))
register(Check(exercise="1.3", draw=f"{HERE}:draw_matmul", probe=f"{HERE}:probe_matmul", cases=6))
register(Check(exercise="1.4", draw=f"{HERE}:draw_graph", probe=f"{HERE}:probe_graph", cases=2))
