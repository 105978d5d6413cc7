"""The datasets a `train` experiment can name (`dataset:`), without importing torch: suite loading
checks limits against them, and `run` decides from them whether a data directory is needed.

- `fashion_mnist`: the full set (60,000 + 10,000), read from the data directory (`--data-dir`,
  `$HARNESS_DATA_DIR`, else the per-user default), downloaded with `--download`.
- `fashion_mnist_sample`: the first 2,000 training and 1,000 test examples, shipped inside the
  package (fashion_mnist_sample/README.md: provenance, digests, how to rebuild it); read from
  there whatever the data directory is, never downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FULL = "fashion_mnist"
SAMPLE = "fashion_mnist_sample"
NAMES = (FULL, SAMPLE)


@dataclass(frozen=True)
class Shipped:
    root: Path  # a torchvision root: root/FashionMNIST/raw/*.gz
    train: int  # training examples in it
    val: int  # test (validation) examples in it


SHIPPED = {SAMPLE: Shipped(Path(__file__).resolve().parent / "fashion_mnist_sample", train=2000, val=1000)}
FULL_TRAIN = 60_000  # training examples of the full set


def train_images(dataset: str, train_limit: int | None) -> int:
    """How many images an experiment trains on: its dataset's training set, or the first train_limit."""
    size = SHIPPED[dataset].train if dataset in SHIPPED else FULL_TRAIN
    return min(size, train_limit) if train_limit else size


def needs_data_dir(dataset: str) -> bool:
    """Whether the dataset is read from the data directory (else it ships with the package)."""
    return dataset not in SHIPPED
