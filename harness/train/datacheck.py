"""Fashion-MNIST present and sound before a run starts (`check_data`, called by `harness run`).

The files an invocation will read are decompressed into the cache the load then uses
(harness.train.data) and their IDX headers, sizes and labels checked, so missing or damaged files
stop it with one message (exit 2) before a run directory or MLflow run exists. Shipped datasets
(harness.train.datasets) are checked in the package; a suite that uses only those needs no data
directory.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from harness.core.errors import UserError
from harness.train import datasets
from harness.train.data import CLASSES, FILES, IMAGE_SIZE, _decoded_root, _fix, _raw, dataset_root


def check_available(data_dir: Path) -> None:
    """Raise one UserError unless the four files are in data_dir (archived or not) and sound: each
    archive decompresses (into the cache the load then uses), each IDX file has the right magic,
    shape and length, each split as many labels as images, labels within 0..9. Called before a run
    starts, so missing or damaged data stops it before anything is written."""
    data_dir = Path(data_dir).expanduser()
    root, temporary = _decoded_root(data_dir)
    try:
        problems = _idx_problems(_raw(root), _raw(data_dir), gz=root != data_dir)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    if problems:
        raise UserError("\n".join(problems) + f"\n{_fix(data_dir)}")


def check_data(experiments, data_dir: str | Path | None, *, download: bool = False) -> None:
    """Before a run: the data every `train` experiment of `experiments` will read is present and
    sound (check_available), each location checked once. Shipped datasets are read from the
    package, so a suite that uses only those needs no data directory. With `download`, a data
    directory that lacks files is left to the download (torchvision md5-checks what it fetches)."""
    roots = []
    for exp in experiments:
        if exp.spec.kind != "train":
            continue
        root = dataset_root(exp.spec.dataset, data_dir)
        shipped = exp.spec.dataset in datasets.SHIPPED
        if not shipped and download and not all((_raw(root) / f"{f}.gz").is_file() for f in FILES):
            continue
        if root not in roots:
            roots.append(root)
    for root in roots:
        check_available(root)



_MAGIC = {"images": 0x0803, "labels": 0x0801}  # IDX: unsigned bytes, 3 dims / 1 dim


def _idx_problems(decoded: Path, source: Path, *, gz: bool) -> list[str]:
    """What is wrong with the uncompressed IDX files in `decoded`, each naming its file in `source`.

    Reads headers and file sizes only, and the labels (60 kB): no image is decoded."""
    problems = []
    for prefix in ("train", "t10k"):
        counts = {}
        for what, name in (("images", f"{prefix}-images-idx3-ubyte"), ("labels", f"{prefix}-labels-idx1-ubyte")):
            shown = source / (f"{name}.gz" if gz else name)
            path = decoded / name
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(16 if what == "images" else -1)
            dims = 3 if what == "images" else 1
            header = 4 + 4 * dims
            if size < header:
                problems.append(f"{shown}: {size} bytes, too short for an IDX header: damaged or not an IDX file")
                continue
            magic, *shape = (int.from_bytes(head[i:i + 4], "big") for i in range(0, header, 4))
            if magic != _MAGIC[what]:
                problems.append(f"{shown}: IDX magic {magic:#010x}, expected {_MAGIC[what]:#010x} "
                                f"(unsigned bytes, {dims} dimension{'s' if dims > 1 else ''}): not a Fashion-MNIST {what} file")
                continue
            if what == "images" and tuple(shape[1:]) != IMAGE_SIZE:
                problems.append(f"{shown}: images of {shape[1]}x{shape[2]} pixels, expected 28x28")
                continue
            expected = header + shape[0] * (IMAGE_SIZE[0] * IMAGE_SIZE[1] if what == "images" else 1)
            if size != expected:
                problems.append(f"{shown}: {size:,} bytes decoded, but its header says {shape[0]:,} {what} "
                                f"({expected:,} bytes): truncated or padded")
                continue
            if what == "labels" and shape[0] and max(head[header:]) >= len(CLASSES):
                problems.append(f"{shown}: label {max(head[header:])} outside 0..{len(CLASSES) - 1}")
                continue
            counts[what] = shape[0]
        if len(counts) == 2 and counts["images"] != counts["labels"]:
            problems.append(f"{source / (f'{prefix}-labels-idx1-ubyte' + ('.gz' if gz else ''))}: "
                            f"{counts['labels']:,} labels, but {prefix}-images-idx3-ubyte has {counts['images']:,} images")
    return problems
