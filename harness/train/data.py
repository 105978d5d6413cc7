"""Fashion-MNIST on the device, airbench style: loaded once as uint8, batches as index slices.

Files are read through torchvision's FashionMNIST (`<data_dir>/FashionMNIST/raw/`, as its `root`).
torchvision reads only the uncompressed IDX files, so the `.gz` archives are decompressed once into
a per-user cache keyed by the archives' sha256 (the data directory may be read-only and is never
written to unless `download=True`). No md5 is checked: the shipped image archives are rebuilt and
differ from upstream's; each split records a sha256 of its decoded tensors instead.

Before a run starts, harness.train.datacheck checks the files an invocation will read (through the
same cache). The dataset `fashion_mnist_sample` is read from the package (harness.train.datasets).
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.error import URLError

import torch
import torch.nn.functional as F

from harness.core.determinism import derive_seed
from harness.core.errors import UserError
from harness.train import datasets

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SIZE = (28, 28)


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


DEFAULT_DATA_DIR: Path = _cache_home() / "harness" / "data"


def resolve_data_dir(explicit: str | Path | None) -> Path:
    """`--data-dir` if given, else `$HARNESS_DATA_DIR`, else DEFAULT_DATA_DIR."""
    chosen = explicit or os.environ.get("HARNESS_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, 28, 28), on the target device
    labels: torch.Tensor  # int64 (N,), on the target device
    digest: str  # sha256 of exactly these decoded tensors (after any limit)

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class FashionMNIST:
    train: Split
    val: Split  # the 10k test set, used for validation as the book does
    source: Path  # the directory the files were read from
    digest: str  # one digest over both splits


def _raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _missing_error(data_dir: Path, missing: list[str], cause: BaseException | None = None) -> UserError:
    raw = _raw(data_dir)
    expected = "\n".join(f"  {raw / f}.gz" for f in FILES)
    why = f"\nDownload failed: {cause}" if cause is not None else ""
    return UserError(
        f"Fashion-MNIST not found in {raw} (missing: {', '.join(missing)}).{why}\n{_nearby_hint(data_dir)}"
        f"Expected these four files:\n{expected}\n"
        "To fix: pass --data-dir DIR (or set HARNESS_DATA_DIR=DIR) for a DIR that holds FashionMNIST/raw/; "
        "or copy the four files from a machine that has them to the paths above; "
        "or run once with --download on a machine with internet access.")


def _has_files(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in FILES)


NEARBY_CHILDREN = 200  # subdirectories of the data directory looked into for a hint, at most


def _nearby_hint(data_dir: Path) -> str:
    """A line naming the directory to pass when the four files are one or two levels off: a data
    directory given as DIR/FashionMNIST or DIR/FashionMNIST/raw (too deep), one whose subdirectory
    holds FashionMNIST/raw/ (too shallow), or the files lying in the directory itself."""
    try:
        here = data_dir.expanduser().absolute()
        children = sorted(p for p in itertools.islice(here.iterdir(), NEARBY_CHILDREN) if p.is_dir()) \
            if here.is_dir() else []
        for candidate in (here.parent, here.parent.parent, *children):
            if candidate != here and _has_files(_raw(candidate)):
                return (f"The files are in {_raw(candidate)}: pass --data-dir {candidate} (or set "
                        f"HARNESS_DATA_DIR={candidate}), the directory that holds FashionMNIST/raw/.\n")
        if _has_files(here):
            return (f"The files are in {here} itself; the data directory holds them in FashionMNIST/raw/: "
                    f"move them to {_raw(here)}.\n")
    except OSError:  # an unreadable directory on the way: no hint
        pass
    return ""


def dataset_root(dataset: str, data_dir: str | Path | None) -> Path:
    """Where a dataset is read from: a shipped one from the package, the full set from the data directory."""
    shipped = datasets.SHIPPED.get(dataset)
    return shipped.root if shipped else resolve_data_dir(data_dir)


def _fix(data_dir: Path) -> str:
    if any(Path(data_dir).resolve() == s.root for s in datasets.SHIPPED.values()):
        return ("To fix: this sample ships with harness and is damaged; restore it "
                "(`git checkout -- harness/train/fashion_mnist_sample` in a checkout, else reinstall harness).")
    return ("To fix: replace the file with a good copy (the four files of FashionMNIST/raw/ from a machine that "
            "has them), or delete it and run once with --download on a machine with internet access.")


def _decoded_root(data_dir: Path) -> tuple[Path, bool]:
    """A torchvision `root` whose FashionMNIST/raw/ holds the uncompressed files, and whether it is temporary.

    `data_dir` itself when they are there already (torchvision's download leaves them); else the
    `.gz` archives are decompressed once into $XDG_CACHE_HOME/harness/decoded/fashion-mnist-<key>,
    where key is the sha256 of the four archives: new data gets a new entry, never a stale one.
    """
    raw = _raw(data_dir)
    if all((raw / f).is_file() for f in FILES):
        return data_dir, False
    missing = [f"{f}.gz" for f in FILES if not (raw / f"{f}.gz").is_file()]
    if missing:
        raise _missing_error(data_dir, missing)
    h = hashlib.sha256()
    for f in FILES:
        h.update(f.encode())
        h.update(hashlib.sha256((raw / f"{f}.gz").read_bytes()).digest())
    root = _cache_home() / "harness" / "decoded" / f"fashion-mnist-{h.hexdigest()[:16]}"
    try:
        _decompress_all(raw, _raw(root))
        return root, False
    except OSError:  # no writable cache (read-only home, full disk): decompress for this load only
        root = Path(tempfile.mkdtemp(prefix="harness-fashion-mnist-"))
        try:
            _decompress_all(raw, _raw(root))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return root, True


def _decompress_all(src: Path, dst: Path) -> None:
    """Decompress the archives of src into dst; one UserError naming every archive that fails (a
    damaged archive: truncated, corrupt, not gzip). Only complete, CRC-checked files are written, and
    none of this call's are kept when one fails (dst is keyed by all four archives: it would never be
    used again)."""
    dst.mkdir(parents=True, exist_ok=True)
    damaged, written = [], []
    for f in FILES:
        if (dst / f).is_file():
            continue
        try:
            with gzip.open(src / f"{f}.gz", "rb") as gz:
                data = gz.read()
        except (OSError, EOFError, zlib.error) as e:
            damaged.append(f"{src / f}.gz: cannot decompress ({e or type(e).__name__}): a damaged archive")
            continue
        # write then rename: a concurrent or interrupted load never sees a half-written file
        fd, tmp = tempfile.mkstemp(dir=dst, prefix=f".{f}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, dst / f)
            written.append(dst / f)
        finally:
            Path(tmp).unlink(missing_ok=True)
    if damaged:
        for path in written:
            path.unlink(missing_ok=True)
        raise UserError("\n".join(damaged) + f"\n{_fix(src.parents[1])}")


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(f"{tuple(t.shape)} {t.dtype}\n".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _read_split(root: Path, source: Path, train: bool, limit: int | None, device: torch.device) -> Split:
    from torchvision.datasets import FashionMNIST as TVFashionMNIST

    prefix = "train" if train else "t10k"
    try:
        ds = TVFashionMNIST(str(root), train=train, download=False)
    except (AssertionError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"{_raw(source)}/{prefix}-*-ubyte.gz: not a valid Fashion-MNIST IDX file ({e})") from e
    images, labels = ds.data, ds.targets
    if images.shape[1:] != IMAGE_SIZE or images.shape[0] != labels.shape[0]:
        raise UserError(f"{_raw(source)}/{prefix}-*: {tuple(images.shape)} images but {labels.shape[0]} labels; "
                        f"expected (N, 28, 28) images and N labels")
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < len(CLASSES)):
        raise UserError(f"{_raw(source)}/{prefix}-labels-idx1-ubyte.gz: labels outside 0..{len(CLASSES) - 1}")
    if limit is not None:
        if limit < 1:
            raise UserError(f"{'train' if train else 'val'}_limit must be at least 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    digest = _digest(images, labels)  # on the host, before the copy: describes exactly the data used
    return Split(images.contiguous().to(device), labels.contiguous().to(device), digest)


def load_fashion_mnist(data_dir: Path, device: str | torch.device = "cpu", *, train_limit: int | None = None,
                       val_limit: int | None = None, download: bool = False) -> FashionMNIST:
    """Both splits, moved to `device` once as uint8 images and int64 labels.

    `data_dir` holds FashionMNIST/raw/ (torchvision's `root`). `train_limit`/`val_limit` keep the
    first N examples. `download=True` fetches missing files with torchvision (md5-checked against
    upstream) into data_dir; any failure there becomes a UserError that says what to do.
    """
    data_dir = Path(data_dir).expanduser()
    if download and not all((_raw(data_dir) / f"{f}.gz").is_file() for f in FILES):
        from torchvision.datasets import FashionMNIST as TVFashionMNIST

        try:
            TVFashionMNIST(str(data_dir), train=True, download=True)
        except (RuntimeError, URLError, OSError) as e:
            missing = [f"{f}.gz" for f in FILES if not (_raw(data_dir) / f"{f}.gz").is_file()]
            raise _missing_error(data_dir, missing or [f"{f}.gz" for f in FILES], e) from e
    root, temporary = _decoded_root(data_dir)
    device = torch.device(device)
    try:
        train = _read_split(root, data_dir, True, train_limit, device)
        val = _read_split(root, data_dir, False, val_limit, device)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    digest = hashlib.sha256(f"train={train.digest} val={val.digest}".encode()).hexdigest()[:16]
    return FashionMNIST(train=train, val=val, source=_raw(data_dir), digest=digest)


def train_batches(split: Split, batch_size: int, *, seed: int, epoch: int,
                  part: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every example once, in an order fixed by (seed, epoch) and the device type; last batch may be short.

    The permutation is drawn on the split's device from a generator seeded with derive_seed(seed,
    epoch), so a resumed run replays the same batches without saving generator state. No host sync.
    part=(rank, world_size): that process's contiguous part of each batch (torch.tensor_split; the
    permutation is the same in every process), possibly empty in a last batch shorter than the world.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = split.images.device
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, epoch))
    perm = torch.randperm(len(split), generator=g, device=device)
    for start in range(0, len(split), batch_size):
        idx = perm[start:start + batch_size]
        if part[1] > 1:
            idx = torch.tensor_split(idx, part[1])[part[0]]
        yield split.images[idx], split.labels[idx]


def eval_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential slices (views, no copy), last batch may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(split), batch_size):
        yield split.images[start:start + batch_size], split.labels[start:start + batch_size]


def to_input(images: torch.Tensor, resize: tuple[int, int] | None, *, dtype: torch.dtype = torch.float32,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 28, 28) -> dtype (B, 1, H, W) in [0, 1]: the book's [Resize,] ToTensor, no normalisation.

    Images of a `prepared` split (float32 (B, 1, H, W), already scaled and resized) only change
    dtype and memory format."""
    if images.is_floating_point() and images.dim() == 4:
        return images.to(dtype).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(f"expected uint8 (B, H, W) images, got {images.dtype} {tuple(images.shape)}")
    x = images.unsqueeze(1).to(torch.float32).div_(255)  # scale and resize in fp32 even for bf16 runs
    if resize is not None and tuple(resize) != tuple(images.shape[-2:]):
        # The book resizes each PIL image (uint8, bilinear) before ToTensor; this resizes the whole
        # float batch on the device. Both are bilinear, but the values are not bit-identical
        # (no rounding to uint8 in between, different kernels).
        x = F.interpolate(x, size=tuple(resize), mode="bilinear", align_corners=False, antialias=False)
    x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare(data: FashionMNIST, resize: tuple[int, int] | None, budget_bytes: int) -> FashionMNIST | None:
    """Both splits scaled and resized once, as float32 (N, 1, H, W) on their device, when they fit in
    `budget_bytes`; else None (the caller resizes per batch).

    Bilinear resizing treats each image on its own, so the values are bit for bit those that
    `to_input` computes batch by batch (the tests check it): strict-mode fingerprints do not change.
    It saves the per-batch resize (once per image and epoch) in training and evaluation.
    """
    if resize is None or tuple(resize) == IMAGE_SIZE:
        return None
    need = (len(data.train) + len(data.val)) * resize[0] * resize[1] * 4
    if need > budget_bytes:
        return None
    return FashionMNIST(_prepared(data.train, resize), _prepared(data.val, resize), data.source, data.digest)


def _prepared(split: Split, resize: tuple[int, int], chunk: int = 1024) -> Split:
    out = torch.empty((len(split), 1, *resize), dtype=torch.float32, device=split.images.device)
    for start in range(0, len(split), chunk):
        out[start:start + chunk] = to_input(split.images[start:start + chunk], resize)
    return Split(out, split.labels, split.digest)


def memory_budget(device: torch.device, fraction: float = 0.25) -> int:
    """Bytes a prepared (resized) dataset may take: `fraction` of the device's free memory
    (CUDA: cudaMemGetInfo; CPU: available RAM), leaving the rest to the model and its activations."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    import psutil

    return int(psutil.virtual_memory().available * fraction)
