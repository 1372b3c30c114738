"""Where a training step's time goes, per component, for tinyq and for PyTorch (benchmark helper).

tinyq: every Function's forward and backward is wrapped with a timer for the profiled steps;
each node is charged to the component of the layer (module type) that created it, the loss
region, or "other". torch: torch.profiler's CPU events, each op's self time charged to the
component named by the op or its nearest named parent. Both: optimizer = zero_grad + step;
graph = the step's wall time minus everything charged (autograd bookkeeping, Python glue).
Profiling adds overhead to both engines: read the shares, not the absolute times.
"""
from __future__ import annotations

import contextlib
import time

COMPONENTS = ("conv forward", "conv backward", "pool", "batchnorm", "linear", "activation", "loss", "optimizer",
              "other ops", "graph")
MODULE_COMPONENT = {"Conv2d": "conv", "MaxPool2d": "pool", "AvgPool2d": "pool", "AdaptiveAvgPool2d": "pool",
                    "GlobalAvgPool2d": "pool", "BatchNorm1d": "batchnorm", "BatchNorm2d": "batchnorm",
                    "Linear": "linear", "ReLU": "activation"}
TORCH_RULES = (("optimizer.", "optimizer"), ("convolution", "conv"), ("max_pool", "pool"), ("maxpool", "pool"),
               ("avg_pool", "pool"), ("avgpool", "pool"), ("batch_norm", "batchnorm"), ("batchnorm", "batchnorm"),
               ("addmm", "linear"), ("aten::linear", "linear"), ("relu", "activation"), ("threshold", "activation"),
               ("log_softmax", "loss"), ("logsoftmax", "loss"), ("nll_loss", "loss"), ("nllloss", "loss"),
               ("cross_entropy", "loss"))


def _charge(totals, component, backward, seconds):
    if component == "conv":
        component = "conv backward" if backward else "conv forward"
    elif component not in COMPONENTS:
        component = "other ops"
    totals[component] = totals.get(component, 0.0) + seconds


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def tinyq_breakdown(model, make_step, repeat: int, function_base) -> dict:
    """ms per step by component, from timers around every Function.forward/backward (restored after).

    make_step(loss_region) -> step: a train step that computes its loss inside `with loss_region():`.
    """
    totals, current = {}, ["other"]
    patched = []

    @contextlib.contextmanager
    def loss_region():
        outer, current[0] = current[0], "loss"
        try:
            yield
        finally:
            current[0] = outer
    step = make_step(loss_region)

    def wrap_function(cls):
        forward, backward = cls.__dict__["forward"].__func__, cls.__dict__["backward"].__func__

        def timed_forward(ctx, *args, **kwargs):
            ctx.bench_component = current[0]
            start = time.perf_counter()
            out = forward(ctx, *args, **kwargs)
            _charge(totals, ctx.bench_component, False, time.perf_counter() - start)
            return out

        def timed_backward(ctx, grad):
            start = time.perf_counter()
            grads = backward(ctx, grad)
            _charge(totals, getattr(ctx, "bench_component", "other"), True, time.perf_counter() - start)
            return grads
        cls.forward, cls.backward = staticmethod(timed_forward), staticmethod(timed_backward)
        patched.append((cls, forward, backward))

    for cls in set(_all_subclasses(function_base)):
        if "forward" in cls.__dict__ and "backward" in cls.__dict__:
            wrap_function(cls)

    def wrap_module(module, component):
        forward = module.forward

        def timed(*args, **kwargs):
            outer, current[0] = current[0], component
            try:
                return forward(*args, **kwargs)
            finally:
                current[0] = outer
        module.__dict__["forward"] = timed
    for module in model.modules():
        if type(module).__name__ in MODULE_COMPONENT:
            wrap_module(module, MODULE_COMPONENT[type(module).__name__])

    optimizer = step.optimizer
    for name in ("zero_grad", "step"):
        method = getattr(optimizer, name)

        def timed(method=method):
            start = time.perf_counter()
            method()
            _charge(totals, "optimizer", False, time.perf_counter() - start)
        optimizer.__dict__[name] = timed
    try:
        step()                                              # warm (numba caches, allocator)
        totals.clear()
        start = time.perf_counter()
        for _ in range(repeat):
            step()
        wall = time.perf_counter() - start
    finally:
        for cls, forward, backward in patched:
            cls.forward, cls.backward = staticmethod(forward), staticmethod(backward)
        for module in model.modules():
            module.__dict__.pop("forward", None)
        for name in ("zero_grad", "step"):
            optimizer.__dict__.pop(name, None)
    return _per_step_ms(totals, wall, repeat)


def _per_step_ms(totals, wall, repeat) -> dict:
    parts = {name: 1e3 * totals.get(name, 0.0) / repeat for name in COMPONENTS if name != "graph"}
    parts["graph"] = max(0.0, 1e3 * wall / repeat - sum(parts.values()))
    parts["total"] = 1e3 * wall / repeat
    return parts


def torch_breakdown(torch, step, repeat: int) -> dict:
    """ms per step by component from torch.profiler's CPU events (self time, charged via the parent chain)."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        start = time.perf_counter()
        for _ in range(repeat):
            step()
        wall = time.perf_counter() - start
    totals = {}
    for event in profile.events():
        component, backward, node = None, False, event
        while node is not None and component is None:
            name = node.name.lower()
            component = next((c for key, c in TORCH_RULES if key in name), None)
            backward = "backward" in name
            node = node.cpu_parent
        _charge(totals, component or "other", backward, event.self_cpu_time_total * 1e-6)
    return _per_step_ms(totals, wall, repeat)


def breakdown(model, images, labels, make_tinyq_step, torch_step, torch, repeat: int) -> dict:
    """{"tinyq": {component: ms per step}, "torch": {...}} for one model."""
    from tinyq.function import Function

    def make_step(loss_region):
        return make_tinyq_step(model, images, labels, loss_region=loss_region)
    result = {"tinyq": tinyq_breakdown(model, make_step, repeat, Function)}
    if torch_step is not None:
        result["torch"] = torch_breakdown(torch, torch_step, repeat)
    return result


def format_breakdown(parts: dict) -> str:
    engines = list(parts)
    header = "component".ljust(14) + "".join(f"{e:>10}" for e in engines)
    lines = [header, "-" * len(header)]
    for name in COMPONENTS + ("total",):
        lines.append(name.ljust(14) + "".join(f"{parts[e].get(name, 0.0):>10.2f}" for e in engines))
    return "\n".join(lines)
