"""Rebuild the Fashion-MNIST sample shipped in harness/train/fashion_mnist_sample/ from a full copy.

    python scripts/make_fashion_mnist_sample.py [--source DIR] [--out DIR] [--check]

--source: a directory holding FashionMNIST/raw/*.gz (default ../shared/data beside the checkout,
else $HARNESS_DATA_DIR); --out: where FashionMNIST/raw/ is written (default the package's sample
directory); --check: write nothing, exit 1 unless the files there are byte for byte what this
script makes.

Each file keeps the first N records of the full file in its order (N = 2,000 training and 1,000
test images and labels) with its IDX header's count set to N, and is gzipped deterministically:
a fixed 10-byte header (no file name, mtime 0, OS "unknown"), one raw deflate stream at level 9
(zlib, default memory level and strategy), then CRC-32 and length. The bytes depend only on the
zlib deflate implementation (CPython's bundled/system zlib; zlib-ng would compress differently,
with the same decoded content: the README lists both digests).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "harness" / "train" / "fashion_mnist_sample"
COUNTS = {"train": 2000, "t10k": 1000}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 2, 0xFF])  # deflate, no flags, mtime 0, max compression, OS unknown


def first_records(idx: bytes, n: int, name: str) -> bytes:
    """The IDX file cut to its first n records, with its count set to n."""
    magic, count = struct.unpack(">II", idx[:8])
    dims = magic & 0xFF
    shape = struct.unpack(f">{dims - 1}I", idx[8:4 + 4 * dims]) if dims > 1 else ()
    record = 1
    for d in shape:
        record *= d
    if magic >> 8 != 0x08 or count < n:
        sys.exit(f"{name}: not a uint8 IDX file with at least {n} records (magic {magic:#010x}, {count} records)")
    header = struct.pack(">II", magic, n) + idx[8:4 + 4 * dims]
    return header + idx[4 + 4 * dims:4 + 4 * dims + n * record]


def deterministic_gzip(data: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def build(source: Path) -> dict[str, bytes]:
    raw = source / "FashionMNIST" / "raw"
    out = {}
    for f in FILES:
        path = raw / f"{f}.gz"
        if not path.is_file():
            sys.exit(f"{path}: not found; pass --source DIR for a DIR holding FashionMNIST/raw/*.gz")
        with gzip.open(path, "rb") as gz:
            out[f"{f}.gz"] = deterministic_gzip(first_records(gz.read(), COUNTS[f.split("-")[0]], str(path)))
    return out


def default_source() -> Path:
    for candidate in (REPO.parent / "shared" / "data", os.environ.get("HARNESS_DATA_DIR")):
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return Path(candidate)
    sys.exit("no full Fashion-MNIST found at ../shared/data or $HARNESS_DATA_DIR; pass --source DIR")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="directory holding FashionMNIST/raw/*.gz (the full set)")
    parser.add_argument("--out", type=Path, default=SAMPLE, help=f"directory to write FashionMNIST/raw/ into (default {SAMPLE})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 unless --out holds these bytes")
    args = parser.parse_args(argv)
    files = build(args.source or default_source())
    raw = args.out / "FashionMNIST" / "raw"
    if args.check:
        differ = [name for name, data in files.items() if not (raw / name).is_file() or (raw / name).read_bytes() != data]
        for name in differ:
            print(f"{raw / name}: differs from what {Path(__file__).name} makes", file=sys.stderr)
        if not differ:
            print(f"{raw}: the four files are byte for byte what {Path(__file__).name} makes")
        return 1 if differ else 0
    raw.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (raw / name).write_bytes(data)
        decoded = gzip.decompress(data)
        print(f"{name}  {len(data):>8,} bytes  sha256 {hashlib.sha256(data).hexdigest()}  "
              f"decoded {len(decoded):,} bytes sha256 {hashlib.sha256(decoded).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
