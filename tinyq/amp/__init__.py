"""Simulated mixed-precision training: autocast, fp32 master weights, loss scaling, underflow statistics.

    from tinyq import amp
    scaler = amp.LossScaler()                          # dynamic, PyTorch GradScaler's defaults
    with amp.autocast("float16"):                      # print(amp.policy_table("float16")) shows the rules
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()

autocast.py   the op policy and the gradients produced in the format
scaler.py     LossScaler: static and dynamic loss scaling, skip on inf/NaN, state_dict
statistics.py underflow to zero / subnormal fractions, log2|g| histograms against the format's range
"""
from tinyq.amp.autocast import (FP32_OPS, LOW_PRECISION_OPS, Autocast, FormatCast,  # noqa: F401
                                autocast, per_tensor_scale, policy_table, recipe, round_scaled)
from tinyq.amp.scaler import LossScaler, unscale_grads, update_scale  # noqa: F401
from tinyq.amp.statistics import (GradientStatistics, format_range, log2_bins,  # noqa: F401
                                  log2_histogram, underflow_fractions)
