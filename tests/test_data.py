"""Contracts of harness.train.data: offline loading, digests, seeded on-device batches, to_input."""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import time
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from harness.core.errors import UserError
from harness.train import data, datacheck, datasets
from harness.train.data import (
    eval_batches,
    load_fashion_mnist,
    resolve_data_dir,
    to_input,
    train_batches,
)

N_TRAIN, N_VAL = 50, 20
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
# sha256[:16] of the decoded tensors of ../shared/data (its README pins the files' sha256s)
REAL_DIGESTS = {"train": "53903378e759584d", "val": "eac17110b979ae16", "all": "ab29592ab3f924b0"}


def _idx(tensor: torch.Tensor) -> bytes:
    """IDX (big-endian header, uint8 payload) as upstream's archives hold it."""
    header = struct.pack(">I", 0x0800 | tensor.dim()) + b"".join(struct.pack(">I", d) for d in tensor.shape)
    return header + tensor.to(torch.uint8).numpy().tobytes()


def synthetic_images(n: int, offset: int) -> torch.Tensor:
    """Image i is filled with (i + offset) % 256 and has pixel [0, 0] = i % 7: known, distinct values."""
    img = ((torch.arange(n) + offset) % 256).to(torch.uint8).view(n, 1, 1).repeat(1, 28, 28)
    img[:, 0, 0] = (torch.arange(n) % 7).to(torch.uint8)
    return img


def synthetic_labels(n: int) -> torch.Tensor:
    return (torch.arange(n) * 3 % 10).to(torch.int64)


def write_fashion_mnist(root: Path, n_train: int = N_TRAIN, n_val: int = N_VAL,
                        tweak: bool = False, gz: bool = True) -> Path:
    """A small Fashion-MNIST in torchvision's layout: root/FashionMNIST/raw/*-ubyte[.gz]."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_images = synthetic_images(n_train, 0)
    if tweak:
        train_images[n_train - 1, 27, 27] ^= 1
    files = {
        "train-images-idx3-ubyte": _idx(train_images),
        "train-labels-idx1-ubyte": _idx(synthetic_labels(n_train)),
        "t10k-images-idx3-ubyte": _idx(synthetic_images(n_val, 100)),
        "t10k-labels-idx1-ubyte": _idx(synthetic_labels(n_val)),
    }
    for name, payload in files.items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=0))
        else:
            (raw / name).write_bytes(payload)
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decompressed archives go to this test's tmp dir, never the user's ~/.cache."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def fmnist_dir(tmp_path: Path) -> Path:
    return write_fashion_mnist(tmp_path / "data")


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root): (p.stat().st_mtime_ns, p.stat().st_size, p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


# --- loading -------------------------------------------------------------------------------------


def test_load_shapes_dtypes_and_values(fmnist_dir: Path) -> None:
    ds = load_fashion_mnist(fmnist_dir)
    assert ds.source == fmnist_dir / "FashionMNIST" / "raw"
    assert len(ds.train) == N_TRAIN and len(ds.val) == N_VAL
    for split in (ds.train, ds.val):
        assert split.images.dtype == torch.uint8 and split.images.shape == (len(split), 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
        assert split.images.device.type == "cpu"
    assert torch.equal(ds.train.images, synthetic_images(N_TRAIN, 0))
    assert torch.equal(ds.val.images, synthetic_images(N_VAL, 100))
    assert torch.equal(ds.train.labels, synthetic_labels(N_TRAIN))
    assert torch.equal(ds.val.labels, synthetic_labels(N_VAL))


def test_digest_is_stable_and_sees_one_pixel(tmp_path: Path, fmnist_dir: Path) -> None:
    a, b = load_fashion_mnist(fmnist_dir), load_fashion_mnist(fmnist_dir)  # second one from the cache
    assert len(a.digest) >= 16 and len(a.train.digest) >= 16
    assert (a.digest, a.train.digest, a.val.digest) == (b.digest, b.train.digest, b.val.digest)
    assert a.train.digest != a.val.digest
    tweaked = load_fashion_mnist(write_fashion_mnist(tmp_path / "tweaked", tweak=True))
    assert tweaked.train.digest != a.train.digest and tweaked.digest != a.digest
    assert tweaked.val.digest == a.val.digest


def test_uncompressed_files_read_directly_same_digest(tmp_path: Path, fmnist_dir: Path) -> None:
    plain = load_fashion_mnist(write_fashion_mnist(tmp_path / "plain", gz=False))
    assert plain.digest == load_fashion_mnist(fmnist_dir).digest


def test_limits_keep_first_examples_and_change_digest(fmnist_dir: Path) -> None:
    full = load_fashion_mnist(fmnist_dir)
    small = load_fashion_mnist(fmnist_dir, train_limit=7, val_limit=3)
    assert (len(small.train), len(small.val)) == (7, 3)
    assert torch.equal(small.train.images, full.train.images[:7])
    assert torch.equal(small.val.labels, full.val.labels[:3])
    assert small.train.digest != full.train.digest and small.digest != full.digest
    assert len(load_fashion_mnist(fmnist_dir, train_limit=10_000).train) == N_TRAIN
    with pytest.raises(UserError, match="train_limit"):
        load_fashion_mnist(fmnist_dir, train_limit=0)


def test_read_only_source_is_never_written(fmnist_dir: Path, _private_cache: Path) -> None:
    dirs = [fmnist_dir, fmnist_dir / "FashionMNIST", fmnist_dir / "FashionMNIST" / "raw"]
    for f in (fmnist_dir / "FashionMNIST" / "raw").iterdir():
        f.chmod(0o444)
    for d in dirs:
        d.chmod(0o555)
    try:
        before = _snapshot(fmnist_dir)
        ds = load_fashion_mnist(fmnist_dir)
        load_fashion_mnist(fmnist_dir)
        assert _snapshot(fmnist_dir) == before  # root ignores chmod, so compare too
        assert len(ds.train) == N_TRAIN
        cached = list(_private_cache.rglob("train-images-idx3-ubyte"))
        assert len(cached) == 1 and "fashion-mnist-" in str(cached[0])
    finally:
        for d in dirs:
            d.chmod(0o755)


def test_corrupt_archive_is_a_user_error(fmnist_dir: Path) -> None:
    (fmnist_dir / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(fmnist_dir)


# --- missing data and where to look ----------------------------------------------------------------


def test_missing_data_says_where_and_how(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(UserError) as err:
        load_fashion_mnist(empty)
    msg = str(err.value)
    for name in data.FILES:
        assert str(empty / "FashionMNIST" / "raw" / f"{name}.gz") in msg
    assert "--data-dir" in msg and "HARNESS_DATA_DIR" in msg and "--download" in msg


def test_failed_download_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url, download_root, filename=None, md5=None, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    target = tmp_path / "dl"
    with pytest.raises(UserError) as err:
        load_fashion_mnist(target, download=True)
    msg = str(err.value)
    assert str(target / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz") in msg
    assert "no network" in msg and "--data-dir" in msg


def test_download_goes_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_fashion_mnist(tmp_path / "mirror") / "FashionMNIST" / "raw"
    calls = []

    def fake(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(filename)
        gz = (source / filename).read_bytes()
        (Path(download_root) / filename).write_bytes(gz)
        (Path(download_root) / filename.removesuffix(".gz")).write_bytes(gzip.decompress(gz))

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fake)
    ds = load_fashion_mnist(tmp_path / "dl", download=True)
    assert sorted(calls) == sorted(f"{f}.gz" for f in data.FILES)
    assert ds.digest == load_fashion_mnist(source.parents[1]).digest
    load_fashion_mnist(tmp_path / "dl", download=True)  # present now: nothing fetched again
    assert len(calls) == 4


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == data.DEFAULT_DATA_DIR
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"


# --- batches -------------------------------------------------------------------------------------


def _epoch(split, batch_size: int, seed: int, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(train_batches(split, batch_size, seed=seed, epoch=epoch))


def test_train_batches_cover_every_example_once(fmnist_dir: Path) -> None:
    split = load_fashion_mnist(fmnist_dir).train
    batches = _epoch(split, 16, seed=0, epoch=0)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]  # last partial batch kept
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    # synthetic image i is filled with i: the fill values recover the permutation
    order = images[:, 1, 1].long()
    assert torch.equal(order.sort().values, torch.arange(N_TRAIN))
    assert not torch.equal(order, torch.arange(N_TRAIN))
    assert torch.equal(images, split.images[order]) and torch.equal(labels, split.labels[order])


def test_train_batches_depend_only_on_seed_and_epoch(fmnist_dir: Path) -> None:
    split = load_fashion_mnist(fmnist_dir).train

    def order(seed: int, epoch: int) -> torch.Tensor:
        return torch.cat([x[:, 1, 1] for x, _ in _epoch(split, 8, seed, epoch)])

    torch.manual_seed(123)  # the global RNG plays no part
    first = order(0, 3)
    torch.manual_seed(456)
    assert torch.equal(first, order(0, 3))
    assert not torch.equal(first, order(0, 4))
    assert not torch.equal(first, order(1, 3))


def test_eval_batches_in_order(fmnist_dir: Path) -> None:
    split = load_fashion_mnist(fmnist_dir).val
    batches = list(eval_batches(split, 8))
    assert [len(y) for _, y in batches] == [8, 8, 4]
    assert torch.equal(torch.cat([x for x, _ in batches]), split.images)
    assert torch.equal(torch.cat([y for _, y in batches]), split.labels)


@pytest.mark.gpu
def test_batches_on_cuda(fmnist_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    split = load_fashion_mnist(fmnist_dir, "cuda").train
    assert split.images.device.type == "cuda" and split.labels.device.type == "cuda"
    first = _epoch(split, 16, seed=0, epoch=0)
    assert all(x.device.type == "cuda" for x, _ in first)
    order = torch.cat([x[:, 1, 1] for x, _ in first]).long().cpu()
    assert torch.equal(order.sort().values, torch.arange(N_TRAIN))
    again = torch.cat([x[:, 1, 1] for x, _ in _epoch(split, 16, seed=0, epoch=0)]).long().cpu()
    assert torch.equal(order, again)
    x = to_input(first[0][0], (96, 96), dtype=torch.bfloat16, channels_last=True)
    assert x.device.type == "cuda" and x.shape == (16, 1, 96, 96)


# --- to_input ------------------------------------------------------------------------------------


def test_to_input_scales_like_to_tensor() -> None:
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).repeat(4, 28, 28 // 3 + 1)[:, :, :28].contiguous()
    x = to_input(images, None)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert torch.allclose(x[:, 0], images.float() / 255)
    assert torch.equal(to_input(images, (28, 28)), x)  # no-op resize


def test_to_input_resize_dtype_and_channels_last() -> None:
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = to_input(images, (32, 32))
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    flat = to_input(torch.full((2, 28, 28), 200, dtype=torch.uint8), (96, 96))
    assert torch.allclose(flat, torch.full_like(flat, 200 / 255))  # bilinear keeps a constant image
    y = to_input(images, (32, 32), dtype=torch.bfloat16, channels_last=True)
    assert y.dtype == torch.bfloat16 and y.shape == (3, 1, 32, 32)
    assert y.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="uint8"):
        to_input(images.float(), None)


# --- the real data -------------------------------------------------------------------------------


def test_real_fashion_mnist(tmp_path: Path) -> None:
    root = Path(os.environ.get("HARNESS_DATA_DIR") or REAL_DIR)
    if not (root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real Fashion-MNIST not found at {root}/FashionMNIST/raw (set HARNESS_DATA_DIR)")
    start = time.perf_counter()
    ds = load_fashion_mnist(root)
    first_s = time.perf_counter() - start
    again = load_fashion_mnist(root)  # from the decompressed cache
    assert (len(ds.train), len(ds.val)) == (60_000, 10_000)
    assert ds.train.images.shape == (60_000, 28, 28) and ds.train.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(ds.train.labels, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.val.labels, minlength=10), torch.full((10,), 1000))
    assert (again.train.digest, again.val.digest, again.digest) == (ds.train.digest, ds.val.digest, ds.digest)
    if root == REAL_DIR:
        assert {"train": ds.train.digest, "val": ds.val.digest, "all": ds.digest} == REAL_DIGESTS
    assert first_s < 10, f"loading took {first_s:.1f} s"


# --- the resized set, prepared once ----------------------------------------------------------------


@pytest.mark.parametrize("resize", [(32, 32), (96, 80)])
def test_a_prepared_split_gives_bitwise_the_inputs_of_per_batch_resizing(fmnist_dir: Path, resize) -> None:
    ds = load_fashion_mnist(fmnist_dir)
    ready = data.prepare(ds, resize, budget_bytes=1 << 30)
    assert ready is not None and ready.train.images.shape == (len(ds.train), 1, *resize)
    assert ready.digest == ds.digest and torch.equal(ready.train.labels, ds.train.labels)
    pairs = zip(train_batches(ds.train, 7, seed=3, epoch=1), train_batches(ready.train, 7, seed=3, epoch=1))
    for (x, y), (xp, yp) in pairs:
        assert torch.equal(y, yp)
        for cl in (False, True):
            a, b = to_input(x, resize, channels_last=cl), to_input(xp, resize, channels_last=cl)
            assert torch.equal(a, b) and a.stride() == b.stride()
        assert torch.equal(to_input(x, resize, dtype=torch.bfloat16), to_input(xp, resize, dtype=torch.bfloat16))
    for (x, _), (xp, _) in zip(eval_batches(ds.val, 5), eval_batches(ready.val, 5)):
        assert torch.equal(to_input(x, resize), to_input(xp, resize))


def test_prepare_only_when_it_fits_and_something_is_resized(fmnist_dir: Path) -> None:
    ds = load_fashion_mnist(fmnist_dir)
    need = (len(ds.train) + len(ds.val)) * 32 * 32 * 4
    assert data.prepare(ds, (32, 32), budget_bytes=need - 1) is None
    assert data.prepare(ds, (32, 32), budget_bytes=need) is not None
    assert data.prepare(ds, None, budget_bytes=1 << 30) is None
    assert data.prepare(ds, (28, 28), budget_bytes=1 << 30) is None
    assert 0 < data.memory_budget(torch.device("cpu"))


# --- damaged files: an input error before anything is written ----------------------------------


def _gz_payload(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload, mtime=0))


def _truncate_archive(raw: Path) -> tuple[str, str]:
    gz = raw / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:len(gz.read_bytes()) // 2])
    return f"{gz}: cannot decompress", "damaged archive"


def _corrupt_archive(raw: Path) -> tuple[str, str]:
    gz = raw / "t10k-images-idx3-ubyte.gz"
    b = bytearray(gz.read_bytes())
    for i in range(len(b) // 2, len(b) // 2 + 4):  # inside the deflate stream: bad data or a CRC mismatch
        b[i] ^= 0xFF
    gz.write_bytes(bytes(b))
    return f"{gz}: cannot decompress", "damaged archive"


def _wrong_magic(raw: Path) -> tuple[str, str]:
    labels = bytearray(gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes()))
    labels[2:4] = b"\x08\x02"  # unsigned bytes, but 2 dimensions
    _gz_payload(raw / "train-labels-idx1-ubyte.gz", bytes(labels))
    return f"{raw / 'train-labels-idx1-ubyte.gz'}: IDX magic 0x00000802, expected 0x00000801", "not a Fashion-MNIST labels file"


def _wrong_shape(raw: Path) -> tuple[str, str]:
    _gz_payload(raw / "t10k-images-idx3-ubyte.gz", _idx(synthetic_images(N_VAL, 100)[:, :, :27].contiguous()))
    return f"{raw / 't10k-images-idx3-ubyte.gz'}: images of 28x27 pixels, expected 28x28", ""


def _label_count(raw: Path) -> tuple[str, str]:
    _gz_payload(raw / "train-labels-idx1-ubyte.gz", _idx(synthetic_labels(N_TRAIN - 1)))
    return (f"{raw / 'train-labels-idx1-ubyte.gz'}: {N_TRAIN - 1} labels, but train-images-idx3-ubyte has "
            f"{N_TRAIN} images"), ""


def _short_payload(raw: Path) -> tuple[str, str]:
    images = _idx(synthetic_images(N_TRAIN, 0))
    _gz_payload(raw / "train-images-idx3-ubyte.gz", images[:-784])  # a sound archive of a truncated IDX file
    return (f"{raw / 'train-images-idx3-ubyte.gz'}: {16 + (N_TRAIN - 1) * 784:,} bytes decoded, but its header "
            f"says {N_TRAIN} images ({16 + N_TRAIN * 784:,} bytes): truncated or padded"), ""


DAMAGE = {"truncated archive": _truncate_archive, "corrupt archive": _corrupt_archive, "wrong IDX magic": _wrong_magic,
          "wrong image shape": _wrong_shape, "label count": _label_count, "short IDX payload": _short_payload}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_data_stops_run_before_anything_is_written(tmp_path: Path, fmnist_dir: Path, damage: str) -> None:
    """A real `harness run` on real damaged files: exit 2, one message naming the file and the fix,
    no traceback, no run directory and no MLflow store under --out."""
    from conftest import run_cli, write_suite

    message, detail = DAMAGE[damage](fmnist_dir / "FashionMNIST" / "raw")
    write_suite(tmp_path / "s.yaml", "suite: s\nexperiments:\n  - {name: m, kind: train, model: lenet, epochs: 1}\n")
    proc = run_cli("run", "s.yaml", "--data-dir", fmnist_dir, "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("error: ") == 1
    assert message in proc.stderr and detail in proc.stderr
    assert ("To fix: replace the file with a good copy (the four files of FashionMNIST/raw/ from a machine that "
            "has them), or delete it and run once with --download") in proc.stderr
    assert not (tmp_path / "r").exists()  # neither a run directory nor mlflow.db


def test_every_damaged_file_is_named_in_one_message(fmnist_dir: Path, _private_cache: Path) -> None:
    raw = fmnist_dir / "FashionMNIST" / "raw"
    expected = [_label_count(raw)[0], _wrong_shape(raw)[0]]
    with pytest.raises(UserError) as err:
        datacheck.check_available(fmnist_dir)
    assert all(m in str(err.value) for m in expected), str(err.value)
    raw2 = write_fashion_mnist(fmnist_dir.parent / "two") / "FashionMNIST" / "raw"
    expected = [_truncate_archive(raw2)[0], _corrupt_archive(raw2)[0]]
    cached = set(_private_cache.rglob("*-ubyte"))
    with pytest.raises(UserError) as err:
        datacheck.check_available(raw2.parents[1])
    assert all(m in str(err.value) for m in expected), str(err.value)
    assert set(_private_cache.rglob("*-ubyte")) == cached  # the two sound archives' files were not kept


def test_sound_data_passes_the_check_uncompressed_too(tmp_path: Path, fmnist_dir: Path) -> None:
    datacheck.check_available(fmnist_dir)
    datacheck.check_available(write_fashion_mnist(tmp_path / "plain", gz=False))
    plain = tmp_path / "plain" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    plain.write_bytes(plain.read_bytes()[:-1])
    with pytest.raises(UserError, match=f"{plain}: .* truncated or padded"):
        datacheck.check_available(tmp_path / "plain")


# --- the sample shipped in the package (dataset fashion_mnist_sample) -----------------------------

SAMPLE = datasets.SHIPPED[datasets.SAMPLE]


def _suite(tmp_path: Path, text: str):
    from conftest import write_suite

    from harness.suite import load_suite

    return load_suite(write_suite(tmp_path / "s.yaml", text))


def test_the_sample_matches_the_digests_its_readme_lists() -> None:
    readme = (SAMPLE.root / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(FashionMNIST/raw/[\w-]+\.gz)` \| ([\d,]+) \| ([\d,]+) \| `(\w{64})` \| `(\w{64})` \|$",
                      readme, re.M)
    assert sorted(r[0] for r in rows) == sorted(f"FashionMNIST/raw/{f}.gz" for f in data.FILES)
    total = 0
    for name, records, size, sha_file, sha_decoded in rows:
        raw = (SAMPLE.root / name).read_bytes()
        decoded = gzip.decompress(raw)
        assert (len(raw), hashlib.sha256(raw).hexdigest(), hashlib.sha256(decoded).hexdigest()) == (
            int(size.replace(",", "")), sha_file, sha_decoded), name
        assert struct.unpack(">I", decoded[4:8])[0] == int(records.replace(",", "")), name
        total += len(raw)
    assert f"{total:,} bytes in all" in readme


def test_the_sample_is_read_from_the_package_whatever_the_data_dir(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.train import loop

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "nowhere"))
    suite = _suite(tmp_path, """
        suite: s
        experiments:
          - {name: m, kind: train, model: lenet, dataset: fashion_mnist_sample}
          - {name: k, kind: kernel, kernel: corr2d, variants: [native], sizes: {input: [[8, 8]], kernel: [[2, 2]]}}
    """)
    datacheck.check_data(suite.experiments, tmp_path / "nowhere")  # needs no data directory
    datacheck.check_data(suite.experiments, None, download=True)
    assert not (tmp_path / "nowhere").exists()
    ds = loop.load_data(suite.experiments[0].spec, torch.device("cpu"), str(tmp_path / "nowhere"), download=True)
    assert (len(ds.train), len(ds.val)) == (SAMPLE.train, SAMPLE.val) == (2000, 1000)
    assert ds.source == SAMPLE.root / "FashionMNIST" / "raw"
    assert torch.equal(torch.bincount(ds.train.labels, minlength=10) > 100, torch.ones(10, dtype=torch.bool))
    assert not (tmp_path / "nowhere").exists()  # not downloaded either


def test_the_full_set_still_needs_its_data_dir(tmp_path: Path) -> None:
    suite = _suite(tmp_path, """
        suite: s
        experiments:
          - {name: sample, kind: train, model: lenet, dataset: fashion_mnist_sample}
          - {name: full, kind: train, model: lenet}
    """)
    with pytest.raises(UserError, match=f"Fashion-MNIST not found in {tmp_path / 'nowhere' / 'FashionMNIST' / 'raw'}"):
        datacheck.check_data(suite.experiments, tmp_path / "nowhere")
    datacheck.check_data(suite.experiments, tmp_path / "nowhere", download=True)  # missing files: left to the download
    datacheck.check_data(suite.experiments, write_fashion_mnist(tmp_path / "data"))


def test_a_damaged_sample_says_how_to_restore_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    copy = tmp_path / "sample"
    shutil.copytree(SAMPLE.root, copy)
    monkeypatch.setitem(datasets.SHIPPED, datasets.SAMPLE, datasets.Shipped(copy, SAMPLE.train, SAMPLE.val))
    gz = copy / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:100])
    suite = _suite(tmp_path, "suite: s\nexperiments:\n  - {name: m, kind: train, model: lenet, dataset: fashion_mnist_sample}\n")
    with pytest.raises(UserError) as err:
        datacheck.check_data(suite.experiments, None)
    assert f"{gz}: cannot decompress" in str(err.value)
    assert "this sample ships with harness and is damaged" in str(err.value)
    assert "git checkout -- harness/train/fashion_mnist_sample" in str(err.value)


def test_the_sample_is_the_first_examples_of_the_full_set(full_data_dir: Path) -> None:
    sample = load_fashion_mnist(SAMPLE.root)
    full = load_fashion_mnist(full_data_dir, train_limit=SAMPLE.train, val_limit=SAMPLE.val)
    assert torch.equal(sample.train.images, full.train.images) and torch.equal(sample.val.labels, full.val.labels)
    assert (sample.train.digest, sample.val.digest, sample.digest) == (full.train.digest, full.val.digest, full.digest)


def test_the_script_rebuilds_the_sample_byte_for_byte(tmp_path: Path, full_data_dir: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_fashion_mnist_sample.py"
    check = subprocess.run([sys.executable, script, "--source", full_data_dir, "--check"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    made = subprocess.run([sys.executable, script, "--source", full_data_dir, "--out", tmp_path],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    for f in data.FILES:
        assert (tmp_path / "FashionMNIST" / "raw" / f"{f}.gz").read_bytes() == (
            SAMPLE.root / "FashionMNIST" / "raw" / f"{f}.gz").read_bytes(), f
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    assert subprocess.run([sys.executable, script, "--source", full_data_dir, "--out", tmp_path, "--check"],
                          capture_output=True, text=True, timeout=300).returncode == 1


@pytest.mark.parametrize("given, right", [
    ("data/FashionMNIST", "data"),  # one level too deep
    ("data/FashionMNIST/raw", "data"),  # two levels too deep
    (".", "data"),  # one level too shallow
], ids=["too-deep", "two-too-deep", "too-shallow"])
def test_a_data_dir_one_level_off_names_the_right_one(given, right, tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path / "data")
    with pytest.raises(UserError) as err:
        load_fashion_mnist(tmp_path / given)
    assert (f"The files are in {tmp_path / right / 'FashionMNIST' / 'raw'}: pass --data-dir {tmp_path / right} (or "
            f"set HARNESS_DATA_DIR={tmp_path / right}), the directory that holds FashionMNIST/raw/.") in str(err.value)


def test_files_in_the_data_dir_itself_are_told_where_they_belong(tmp_path: Path) -> None:
    raw = write_fashion_mnist(tmp_path / "data") / "FashionMNIST" / "raw"
    flat = tmp_path / "flat"
    raw.rename(flat)
    with pytest.raises(UserError) as err:
        load_fashion_mnist(flat)
    assert f"The files are in {flat} itself; the data directory holds them in FashionMNIST/raw/: move them to " \
           f"{flat / 'FashionMNIST' / 'raw'}." in str(err.value)
    with pytest.raises(UserError) as err:
        load_fashion_mnist(tmp_path / "elsewhere")  # nothing near: no hint
    assert "The files are in" not in str(err.value)
