"""Weight-sharing experiments: accuracy vs codebook size k, and a Deep-Compression table on digits
(prune → share → Huffman, Han et al. 2016), with a pruned + int8-PTQ row: accuracy and bytes per stage.

    tinyq prune --compression             # the table below, JSON/CSV written beside the pruning results

Bytes are the bits actually stored / 8 (tinyq.sharing.storage_bits): sparse weights pay for their
positions (CSR or bitmask, the smaller), shared weights for ceil(log2 k)-bit or Huffman-coded indices
and the k float32 centroids, biases and BatchNorm parameters are float32.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from tinyq import prune, sharing
from tinyq.experiments.bitwidth import calibration_loader, evaluate, generator, train
from tinyq.experiments.pruning import RETRAIN_EPOCHS, prune_and_retrain

FINE_TUNE_EPOCHS, FINE_TUNE_LR = 5, 1e-3


def fine_tune_centroids(model, train_set, epochs: int, seed: int, key: int = 0):
    """Train codebooks (and biases) with Adam: each centroid moves by the summed gradient of its weights."""
    if epochs > 0:
        train(model, train_set, epochs, generator(seed, 200 + key), optimizer="adam", lr=FINE_TUNE_LR, batch_size=64)
    return model


def model_bits(model, value_bits: int = 32) -> int:
    return int(sum(record["stored_bits"] for record in sharing.storage_bits(model, value_bits)))


def quantized_sparse_bits(qsim) -> int:
    """Bits of a converted (PTQ/QAT) model whose weights keep their zeros as zero codes: each weight's
    codes at `bits` each, dense or sparse (positions by CSR/bitmask) whichever is smaller, plus a float32
    scale and int32 zero point per channel; biases int32; activation quantizers 64 bits each."""
    from tinyq.quant.qat import _QuantLayer
    total = 0
    for _, layer in qsim.named_modules():
        if not isinstance(layer, _QuantLayer):
            continue
        codes = layer.quantized_weight()
        record = sharing.layer_bits(codes.values, value_bits=codes.bits)
        channels = np.size(codes.qparams.scale)
        total += min(record["dense_bits"], record["sparse_bits"]) + 64 * channels
        total += 0 if layer.bias is None else 32 * layer.bias.size
        total += 64 * sum(q is not None for q in (layer.input_quant, layer.output_quant))
    return total


def codebook_sweep(model, train_set, test_set, ks=(2, 4, 8, 16, 32), epochs: int = FINE_TUNE_EPOCHS,
                   seed: int = 0) -> list:
    """Records {k, accuracy_kmeans, accuracy_fine_tuned, bytes}: every layer shared with k centroids."""
    records = []
    for k in ks:
        shared = sharing.share_weights(copy.deepcopy(model), k)
        before = evaluate(shared, test_set)
        fine_tune_centroids(shared, train_set, epochs, seed, k)
        records.append({"k": k, "index_bits": math.ceil(math.log2(k)) if k > 1 else 1, "accuracy_kmeans": before,
                        "accuracy_fine_tuned": evaluate(shared, test_set), "bytes": model_bits(shared) // 8})
    return records


def deep_compression(model, train_set, test_set, sparsity: float = 0.9, k: int = 16,
                     retrain_epochs: int = RETRAIN_EPOCHS, fine_tune_epochs: int = FINE_TUNE_EPOCHS,
                     seed: int = 0) -> list:
    """Records {stage, accuracy, bytes, ratio}: float; pruned (iterative global magnitude, retrained);
    pruned + shared (k-means of the survivors, centroids fine-tuned) with fixed-width indices; the same with
    Huffman-coded indices; and, for comparison, the pruned model with int8 PTQ (zeros are zero codes)."""
    from tinyq.experiments.bitwidth import ptq_config
    from tinyq.quant.ptq import quantize_ptq

    float_bits = model_bits(model)
    pruned = prune_and_retrain(model, train_set, sparsity, "iterative", "global", retrain_epochs, seed)
    shared = fine_tune_centroids(sharing.share_weights(copy.deepcopy(pruned), k), train_set, fine_tune_epochs, seed)
    records = sharing.storage_bits(shared)
    fixed = sum(r.get("shared_bits", r["stored_bits"]) for r in records)
    huffman = sum(r.get("huffman_bits", r["stored_bits"]) for r in records)
    dense_pruned = prune.remove_all(copy.deepcopy(pruned))
    int8 = quantize_ptq(dense_pruned, calibration_loader(train_set), ptq_config(8, "minmax"))
    shared_accuracy = evaluate(shared, test_set)
    rows = [("float32", evaluate(model, test_set), float_bits),
            (f"pruned {sparsity:.0%} (sparse float32)", evaluate(pruned, test_set), model_bits(pruned)),
            (f"pruned + shared k={k} (fixed-width indices)", shared_accuracy, fixed),
            (f"pruned + shared k={k} + Huffman", shared_accuracy, huffman),
            (f"pruned {sparsity:.0%} + int8 PTQ (sparse codes)", evaluate(int8, test_set), quantized_sparse_bits(int8))]
    return [{"stage": stage, "accuracy": accuracy, "bytes": math.ceil(bits / 8), "ratio": float_bits / bits}
            for stage, accuracy, bits in rows]
