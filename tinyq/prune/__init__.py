"""Pruning: masks (tinyq.prune.masks), schedules (tinyq.prune.schedules), structured shrink (tinyq.prune.structured).

    from tinyq import prune
    prune.global_magnitude(model, sparsity=0.9)     # masks on every Linear/Conv2d weight, returns them
    prune.sparsity_report(model)                     # per layer and global
    prune.remove_all(model)                          # bake the zeros in

With quantization: PTQ/QAT quantize a pruned Linear/Conv2d with its mask kept (the Quant* layer
computes fq(W_orig ⊙ m)), so the masks hold while the quantized copy trains:
    qmodel = prepare_qat(model, config)             # or quantize_ptq(model, loader, config)
On a symmetric grid a pruned weight is then the zero code, exactly (`remove_all` first bakes the zeros in
and drops the masks, if the quantized model should be free to train them).
"""
from tinyq.prune.masks import (apply_mask, apply_masks, get_mask, global_magnitude, is_pruned,  # noqa: F401
                               magnitude, magnitude_masks, masks, prunable, random_masks, random_prune, reapply,
                               remove, remove_all, sparsity_report)
from tinyq.prune.schedules import agp, agp_sparsity, iterative, lottery_ticket, one_shot, rewind  # noqa: F401
from tinyq.prune.structured import (shrink, slice_input_units, structured, structured_keep,  # noqa: F401
                                    unit_chains, unit_norms)
