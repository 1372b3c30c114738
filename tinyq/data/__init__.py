"""Data: datasets, batching, IDX files, and the cached downloader (NumPy only, no autograd)."""
from .datasets import LOADERS, get_dataset, load_digits, load_fashion_mnist, load_mnist
from .download import DownloadError, cache_dir, fetch, fetch_all, sha256_of
from .idx import read_idx, write_idx
from .loader import ArrayDataset, DataLoader, Dataset, normalize
from .transforms import RandomShift

__all__ = [
    "ArrayDataset", "DataLoader", "RandomShift", "Dataset", "DownloadError", "LOADERS", "cache_dir", "fetch", "fetch_all",
    "get_dataset", "load_digits", "load_fashion_mnist", "load_mnist", "normalize", "read_idx",
    "sha256_of", "write_idx",
]
