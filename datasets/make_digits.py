"""Write datasets/digits.npz: the 8x8 digits with a fixed, stratified train/test split.

Run from the repository root (needs scikit-learn, at generation time only):

    python datasets/make_digits.py

For each label the images of that label are shuffled with
np.random.default_rng(SEED) and the first round(TEST_FRACTION * count) go to
the test split; each split keeps the original order within itself (sorted
indices), so the output is a pure function of SEED and the source data.
"""
from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np

SEED = 0
TEST_FRACTION = 0.2
OUT = Path(__file__).resolve().parent / "digits.npz"


def stratified_split(labels: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """test = per label, the first round(f * n_label) of a shuffled list of that label's indices."""
    test_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shuffled = rng.permutation(members)
        test_parts.append(shuffled[: int(round(test_fraction * len(members)))])
    test_index = np.sort(np.concatenate(test_parts))
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return train_index, test_index


def main() -> int:
    from sklearn.datasets import load_digits  # generation-time only dependency

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # (1797, 8, 8), integer values 0..16
    labels = bunch.target.astype(np.uint8)
    if not np.array_equal(images, bunch.images):
        raise ValueError("digits images are not integers 0..16")
    train_index, test_index = stratified_split(labels, TEST_FRACTION, np.random.default_rng(SEED))
    buffer = io.BytesIO()
    # np.savez (not savez_compressed) is byte-for-byte reproducible for the same arrays
    np.savez(buffer, x_train=images[train_index], y_train=labels[train_index],
             x_test=images[test_index], y_test=labels[test_index])
    OUT.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    print(f"wrote {OUT}: train {len(train_index)}, test {len(test_index)}, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
