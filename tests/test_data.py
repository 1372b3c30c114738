"""tinyq.data: bundled digits, DataLoader, IDX files, and the cached downloader (with a fake opener)."""
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinyq import data
from tinyq.data import (ArrayDataset, DataLoader, Dataset, DownloadError, fetch, get_dataset, load_digits,
                        load_mnist, normalize, read_idx, write_idx)
from tinyq.data.datasets import DIGITS_SHA256, MNIST_FILES

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- digits

def test_digits_file_matches_its_published_checksum():
    digest = hashlib.sha256((REPO / "datasets" / "digits.npz").read_bytes()).hexdigest()
    assert digest == DIGITS_SHA256
    assert DIGITS_SHA256 in (REPO / "datasets" / "README.md").read_text()


def test_digits_shapes_dtypes_and_range():
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    assert x_train.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert len(x_train) + len(x_test) == 1797
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    # pixels are counts 0..16 scaled by 1/16: every value is on that grid
    np.testing.assert_array_equal(x_train * 16, np.round(x_train * 16))
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))


def test_digits_split_is_stratified_and_disjoint():
    raw = np.load(REPO / "datasets" / "digits.npz", allow_pickle=False)
    for label in range(10):
        n_test = int((raw["y_test"] == label).sum())
        n_all = n_test + int((raw["y_train"] == label).sum())
        assert n_test == round(0.2 * n_all)
    train = {row.tobytes() for row in raw["x_train"].reshape(len(raw["x_train"]), -1)}
    test = {row.tobytes() for row in raw["x_test"].reshape(len(raw["x_test"]), -1)}
    # the source has a handful of duplicate images, but the split must not copy whole sets across
    assert len(train & test) < 5


def test_digits_corrupted_or_missing_file_gives_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits.npz not found"):
        load_digits(root=tmp_path)
    blob = bytearray((REPO / "datasets" / "digits.npz").read_bytes())
    blob[1000] ^= 0xFF
    (tmp_path / "digits.npz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupted: SHA-256"):
        load_digits(root=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits("validation")


def test_get_dataset_registry():
    dataset = get_dataset("digits", "test")
    assert isinstance(dataset, ArrayDataset) and len(dataset) == 359
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*digits, mnist, fashion"):
        get_dataset("cifar")


# ---------------------------------------------------------------- DataLoader

def test_dataloader_covers_every_sample_once_per_epoch(rng):
    x = np.arange(23, dtype=np.float64).reshape(23, 1)
    loader = DataLoader(ArrayDataset(x, np.arange(23)), batch_size=5, shuffle=True, rng=rng)
    assert len(loader) == 5
    for _ in range(3):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
        seen = np.concatenate([b[1] for b in batches])
        assert sorted(seen.tolist()) == list(range(23))
        xb, yb = batches[0]
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired


def test_dataloader_same_seed_same_order_and_new_order_each_epoch():
    dataset = ArrayDataset(np.zeros((50, 2)), np.arange(50))

    def orders(seed):
        loader = DataLoader(dataset, batch_size=7, shuffle=True, rng=np.random.default_rng(seed))
        return [np.concatenate([y for _, y in loader]).tolist() for _ in range(2)]

    first, again = orders(3), orders(3)
    assert first == again
    assert first[0] != first[1]
    assert orders(4) != first


def test_dataloader_without_shuffle_keeps_order_and_drop_last():
    dataset = ArrayDataset(np.zeros((10, 3), dtype=np.float32), np.arange(10))
    loader = DataLoader(dataset, batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_dataloader_on_a_plain_dataset():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return np.full((2,), index * index), index

    batches = list(DataLoader(Squares(), batch_size=2))
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(batches[1][0], [[4, 4], [9, 9]])


def test_dataloader_rejects_bad_arguments():
    dataset = ArrayDataset(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="needs rng=np.random.Generator"):
        DataLoader(dataset, shuffle=True)
    with pytest.raises(ValueError, match="batch_size a positive int"):
        DataLoader(dataset, batch_size=0)
    with pytest.raises(TypeError, match="np.random.Generator"):
        DataLoader(dataset, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="same length, got 4 and 3"):
        ArrayDataset(np.zeros((4, 1)), np.zeros(3))


def test_normalize_scalar_and_per_channel(rng):
    x = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    out = normalize(x, [1.0, -2.0], [2.0, 0.5])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 1.0) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], (x[:, 1] + 2.0) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(normalize(x, 0.5, 4.0), (x - 0.5) / 4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="std > 0"):
        normalize(x, 0.0, 0.0)
    with pytest.raises(ValueError, match="expects x \\(N, 3"):
        normalize(x, [0, 0, 0], [1, 1, 1])


# ---------------------------------------------------------------- IDX files

def idx_bytes(type_code: int, shape, payload: bytes) -> bytes:
    """An IDX file written by hand from the format description (independent of write_idx)."""
    header = bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_hand_written_file(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    blob = idx_bytes(0x08, images.shape, images.tobytes())
    path = tmp_path / ("images.idx.gz" if gz else "images.idx")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)
    ints = np.array([[1, -2], [70000, -70000]], dtype=">i4")
    (tmp_path / "ints.idx").write_bytes(idx_bytes(0x0C, ints.shape, ints.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "ints.idx"), [[1, -2], [70000, -70000]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_then_read_idx_round_trip(tmp_path, rng, dtype, name):
    array = (rng.normal(size=(3, 5, 2)) * 50).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(0x08, (4, 2), bytes(range(8)))
    cases = {
        "magic.idx": (b"\x01\x02" + good[2:], "wrong IDX magic"),
        "type.idx": (good[:2] + b"\x07" + good[3:], "wrong IDX magic"),
        "short.idx": (good[:-3], "truncated"),
        "header.idx": (good[:6], "truncated IDX header"),
        "long.idx": (good + b"\x00", "trailing bytes"),
        "tiny.idx": (b"\x00\x00", "not an IDX file"),
        "broken.idx.gz": (gzip.compress(good)[:-6], "corrupted gzip"),
        "plain.idx.gz": (good, "not gzip data"),
    }
    for name, (blob, phrase) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=phrase) as error:
            read_idx(tmp_path / name)
        assert name in str(error.value)


# ---------------------------------------------------------------- downloader

class FakeOpener:
    """Serves bytes per URL, counts calls, and fails like urllib does for unknown URLs."""

    def __init__(self, files):
        self.files = files
        self.calls = []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in self.files:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return io.BytesIO(self.files[name])


def test_fetch_verifies_and_caches_once(tmp_path):
    payload = b"some dataset bytes" * 100
    sha = hashlib.sha256(payload).hexdigest()
    opener = FakeOpener({"f.bin": payload})
    path = fetch("f.bin", sha, ["https://mirror.invalid/data"], tmp_path, opener=opener)
    assert path == tmp_path / "f.bin" and path.read_bytes() == payload
    assert opener.calls == ["https://mirror.invalid/data/f.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    again = fetch("f.bin", sha, ["https://mirror.invalid/data"], tmp_path, opener=opener)
    assert again == path and len(opener.calls) == 1  # verified in cache, not downloaded again


def test_fetch_checksum_mismatch_leaves_no_file(tmp_path):
    opener = FakeOpener({"f.bin": b"tampered"})
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch("f.bin", "0" * 64, ["https://a.invalid", "https://b.invalid"], tmp_path, opener=opener)
    assert len(opener.calls) == 2  # both mirrors tried
    assert list(tmp_path.iterdir()) == []


def test_fetch_offline_names_the_file_and_where_to_put_it(tmp_path):
    with pytest.raises(DownloadError) as error:
        fetch("t10k-labels-idx1-ubyte.gz", "0" * 64, ["https://a.invalid"], tmp_path, opener=FakeOpener({}))
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message
    assert "by hand" in message and "TINYQ_DATA" in message


def test_fetch_with_file_urls(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    write_idx(source / "x.idx.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    sha = hashlib.sha256((source / "x.idx.gz").read_bytes()).hexdigest()
    path = fetch("x.idx.gz", sha, [source.as_uri()], tmp_path / "cache")  # the real urllib opener
    np.testing.assert_array_equal(read_idx(path), [[0, 1, 2], [3, 4, 5]])


def test_load_mnist_from_a_fake_mirror(tmp_path, monkeypatch, rng):
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    files = {}
    for name, array in [("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels),
                        ("train-images-idx3-ubyte.gz", images[:3]), ("train-labels-idx1-ubyte.gz", labels[:3])]:
        write_idx(tmp_path / name, array)
        files[name] = (tmp_path / name).read_bytes()
        monkeypatch.setitem(MNIST_FILES, name, hashlib.sha256(files[name]).hexdigest())
    monkeypatch.setenv("TINYQ_DATA", str(tmp_path / "cache"))
    opener = FakeOpener(files)
    x, y = load_mnist("test", opener=opener)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0] * 255, images)
    np.testing.assert_array_equal(y, labels)
    assert sorted(os.listdir(tmp_path / "cache" / "mnist")) == sorted(files)
    load_mnist("test", opener=opener)
    assert len(opener.calls) == 4  # all four files once; cached: the second load downloads nothing


def test_load_mnist_offline_lists_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYQ_DATA", str(tmp_path))
    with pytest.raises(DownloadError) as error:
        data.load_fashion_mnist("train", opener=FakeOpener({}))
    message = str(error.value)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):   # the test files too, in the first error (issue 12)
        assert name in message
    assert str(tmp_path / "fashion") in message


def _mnist_folder(tmp_path, monkeypatch, images, labels, compress: str):
    """TINYQ_DATA/mnist with the test split as given ("raw" IDX or "gzip" recompressed), train files present."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    suffix = ".gz" if compress == "gzip" else ""
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", labels)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"")        # only looked at when the train split is loaded
    monkeypatch.setenv("TINYQ_DATA", str(tmp_path))
    return folder


@pytest.mark.parametrize("compress", ["raw", "gzip"])
def test_local_mnist_is_accepted_by_its_content_not_its_gzip_bytes(tmp_path, monkeypatch, compress):
    images = np.zeros((10000, 28, 28), np.uint8)
    images[:, 14, 14] = np.arange(10000) % 256
    labels = (np.arange(10000) % 10).astype(np.uint8)
    _mnist_folder(tmp_path, monkeypatch, images, labels, compress)   # gzip: our bytes differ from the published
    x, y = load_mnist("test", opener=FakeOpener({}))                  # offline: nothing may be downloaded
    np.testing.assert_array_equal(np.round(x[:, 0] * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(y, labels)


def test_local_mnist_with_other_content_says_what_differs(tmp_path, monkeypatch):
    folder = _mnist_folder(tmp_path, monkeypatch, np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8), "gzip")
    with pytest.raises(DownloadError) as error:
        load_mnist("test", opener=FakeOpener({}))
    message = str(error.value)
    assert f"{folder / 't10k-images-idx3-ubyte.gz'}: its gzip bytes differ from the published file's" in message
    assert "uint8(5, 28, 28), expected uint8(10000, 28, 28)" in message


def test_idx_header_declaring_2_to_the_96_elements_is_named(tmp_path):
    blob = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1) + b"\0" * 16
    (tmp_path / "huge.idx").write_bytes(blob)
    count = (2 ** 32 - 1) ** 3
    with pytest.raises(ValueError, match=f"= {count} elements \\({count} bytes\\), but the file is truncated"):
        read_idx(tmp_path / "huge.idx")
    (tmp_path / "huge.idx.gz").write_bytes(gzip.compress(blob))
    with pytest.raises(ValueError, match=f"{count} elements .* decompresses to at most"):
        read_idx(tmp_path / "huge.idx.gz")


GZIP_BOMB = """
import sys
import types

# import tinyq.data alone (NumPy only): the tinyq package's __init__ brings in numba and the engine (~150 MB)
# (and from the folder given, not through an editable install's finder, which ignores __path__)
sys.meta_path = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
package = types.ModuleType("tinyq")
package.__path__ = [sys.argv[2]]
sys.modules["tinyq"] = package
from tinyq.data import read_idx


def peak_mb():   # VmHWM: this process's peak resident set (ru_maxrss would include the parent's, kept over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # noqa: E741
    return int(line.split()[1]) / 1024


before = peak_mb()
try:
    read_idx(sys.argv[1])
    outcome = "accepted"
except ValueError as error:
    outcome = str(error)
print(f"{before:.0f}|{peak_mb():.0f}|{outcome}")
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("declared_rows", [1000, 10 ** 6])
def test_gzip_bomb_is_bounded_by_the_declared_size(tmp_path, declared_rows):
    """256 MiB of zeros (0.25 MB gzipped) behind a header declaring 1000 rows (0.8 MB: read that much, then
    'trailing bytes') or 10^6 rows (784 MB > 1032 x 0.25 MB: refused from the header alone). The old reader
    decompressed everything first (2.1 GB for a 1 MB bomb)."""
    path = tmp_path / "bomb.idx.gz"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)       # gzip container
    with open(path, "wb") as out:
        out.write(compressor.compress(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", declared_rows, 28, 28)))
        block = bytes(1 << 20)
        for _ in range(256):
            out.write(compressor.compress(block))
        out.write(compressor.flush())
    assert path.stat().st_size < 0.5e6
    script = tmp_path / "bomb.py"
    script.write_text(GZIP_BOMB)
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(script), str(path), str(repo / "tinyq")], capture_output=True,
                            text=True, timeout=120, cwd=repo)
    assert result.returncode == 0, result.stderr
    before, peak, outcome = result.stdout.strip().split("|", 2)
    assert "trailing bytes" in outcome or "decompresses to at most" in outcome, outcome
    assert float(peak) - float(before) < 50, f"reading raised the peak RSS from {before} to {peak} MB"
    assert float(peak) < 200, f"peak RSS {peak} MB"
