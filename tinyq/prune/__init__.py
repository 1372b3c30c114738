"""Pruning: masks (tinyq.prune.masks), schedules (tinyq.prune.schedules), structured shrink (tinyq.prune.structured).

    from tinyq import prune
    prune.global_magnitude(model, sparsity=0.9)     # masks on every Linear/Conv2d weight, returns them
    prune.sparsity_report(model)                     # per layer and global
    prune.remove_all(model)                          # bake the zeros in

With quantization: PTQ/QAT swap only plain Linear/Conv2d layers, so bake the masks in first
(`remove_all`); for QAT put the masks back on the prepared copy so they hold while it trains:
    qmodel = prune.apply_masks(prepare_qat(prune.remove_all(model), config), masks)
On a symmetric grid a pruned weight is then the zero code, exactly.
"""
from tinyq.prune.masks import (apply_mask, apply_masks, get_mask, global_magnitude, is_pruned,  # noqa: F401
                               magnitude, magnitude_masks, masks, prunable, random_masks, random_prune, reapply,
                               remove, remove_all, sparsity_report)
from tinyq.prune.schedules import agp, agp_sparsity, iterative, lottery_ticket, one_shot, rewind  # noqa: F401
from tinyq.prune.structured import (shrink, slice_input_units, structured, structured_keep,  # noqa: F401
                                    unit_chains, unit_norms)
