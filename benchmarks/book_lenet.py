"""Reference measurement: the book's own training loop (d2l 1.0.3) for LeNet on Fashion-MNIST.

What this runs
--------------
Section 7.6 of the seed notebook, unchanged in substance::

    trainer = d2l.Trainer(max_epochs=10, num_gpus=1)        # here: num_gpus=0 (CPU machine)
    data = d2l.FashionMNIST(batch_size=128)
    model = LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
    trainer.fit(model, data)

``LeNet`` and ``init_cnn`` are defined below exactly as in the notebook (they are identical to
``d2l.LeNet`` / ``d2l.init_cnn``).  The loop itself is d2l 1.0.3's ``Trainer.fit`` /
``Trainer.fit_epoch`` with d2l's ``FashionMNIST`` DataLoaders, i.e. per epoch:

* training: ``torch.utils.data.DataLoader(batch_size=128, shuffle=True, num_workers=4)``
  (d2l's ``DataModule`` default ``num_workers=4``; non-persistent workers, so 4 worker processes are
  started every epoch), transform ``Resize((28, 28))`` + ``ToTensor()`` applied per image in the
  workers; 469 batches (468 x 128 + 1 x 96 = 60,000 images); per batch: forward, cross-entropy,
  ``Module.plot('loss')`` (tensor -> numpy + ``ProgressBoard.draw``), ``zero_grad``, ``backward``,
  ``torch.optim.SGD(lr=0.1).step()``;
* validation: 79 batches over the 10k test set in ``eval()`` / ``no_grad``, plotting val loss and
  val accuracy.

Deviations from the notebook (all forced by this machine, none changes the computation):

* ``num_gpus=0``: there is no GPU.  (With ``num_gpus=1`` d2l would also fall back to the CPU, as it
  takes ``min(num_gpus, torch.cuda.device_count())`` GPUs.)
* Data location: d2l 1.0.3's ``FashionMNIST`` has no ``root`` argument; it inherits
  ``DataModule.__init__(root='../data', num_workers=4)``.  This script replaces only the *root*
  default (``d2l.DataModule.__init__.__defaults__``) with ``--data-root`` and keeps
  ``num_workers=4``.  torchvision is still called with ``download=True`` as d2l does, but it finds
  the uncompressed IDX files under ``<data-root>/FashionMNIST/raw/`` and never downloads or checks
  md5s.  If those files are missing the script gunzips them from ``--source-raw`` (the offline copy
  in ``/work/shared/data/FashionMNIST/raw``).  The sha256 of each uncompressed file is recorded and
  compared with the values in ``/work/shared/data/README.md`` (the image files are a re-ordered
  rebuild of upstream's, so results may differ slightly from runs on upstream's files).
* Headless: ``MPLBACKEND=Agg``.  With plotting on, ``ProgressBoard.draw`` still does everything it
  does in a notebook: ``use_svg_display()`` (which creates an IPython ``InteractiveShell``), re-plots
  all curves with matplotlib, and ``IPython.display.display(fig)`` renders the figure to SVG (the
  shell's display publisher then prints ``<Figure ...>`` to stdout); only the browser is missing.
  ``IPYTHONDIR`` defaults to ``/tmp/d2l-ipython`` so nothing is written to ``~/.ipython``.
* ``--no-plot`` replaces ``d2l.ProgressBoard.draw`` by a function that only records the value (no
  matplotlib, no IPython).  ``Module.plot`` still runs (including its per-batch tensor->numpy
  conversion), as that is part of d2l's ``training_step``.

What is timed (``time.perf_counter``)
-------------------------------------
* ``fit_wall_s``: the whole ``trainer.fit(model, data)`` call (creating the DataLoaders, all
  epochs with their validation passes, and all plotting).  Data loading from disk, model
  construction and ``apply_init`` happen before and are not included.
* per epoch, ``epoch_s``: one call of d2l's ``Trainer.fit_epoch`` (training + validation).
* per epoch, ``train_s``: the training part only.  The trainer's train DataLoader is wrapped (after
  d2l's ``prepare_data``) in a thin iterable; the window opens when ``fit_epoch``'s ``for`` loop
  calls ``iter()`` on it (so it *includes* starting the 4 worker processes and waiting for the first
  batch) and closes when the loop asks for the batch after the last one, i.e. after the 469th
  optimizer step and the DataLoader's worker shutdown.  It contains everything in the training
  loop body, including ``Module.plot``/``ProgressBoard.draw`` for the train loss (i.e. plotting
  cost, unless ``--no-plot``).  It excludes ``model.train()``, and the validation pass.
  ``train_first_batch_s`` is the part of the window spent until the first batch arrived.
* ``val_s``: the same for the validation DataLoader inside ``fit_epoch``.
* ``draw_s``: total time spent inside ``ProgressBoard.draw`` (train and val), for reporting the
  plotting overhead.
* ``train_images_per_s`` = 60,000 x epochs / sum(train_s).  This is the headline number.
* ``train_iter_s_median`` (and p10/p90): per-iteration times inside the training window, measured
  from one batch's arrival to the next (so one optimizer step plus waiting for the next batch;
  the last one ends at the window's end).  ``train_images_per_s_from_median_iter`` = 128 / median
  (median over epochs at top level).  These are diagnostics for a shared machine: when another
  process holds a core, torch's 2 intra-op threads wait on each other and iterations slow down by
  an order of magnitude, so p10 approximates the uncontended step time and a large p10/median gap
  means the run was disturbed.  Report the headline number only from a quiet machine.

After training (outside all timed windows) the final validation accuracy is computed exactly over
the 10k test images: ``model.eval()``, ``no_grad``, ``data.get_dataloader(False)``, summing
``Classifier.accuracy(..., averaged=False)``.  ``final_train_loss`` is the mean of the per-batch
training losses of the last epoch (what the book's ``train_loss`` curve shows); the book's own
batch-averaged ``val_loss``/``val_acc`` of each epoch are recorded too.

Scratch environment (does not touch the project's .venv)
----------------------------------------------------------
d2l 1.0.3 pins old numpy/matplotlib/pandas, so it is installed without dependencies into a target
directory and run with the project's venv (torch, torchvision, numpy, pandas, matplotlib, requests,
scipy, pillow are already there); only d2l's missing imports (IPython, matplotlib-inline and their
own dependencies) are added::

    .venv/bin/python -m pip install --target /tmp/d2lpkgs --no-deps d2l==1.0.3
    .venv/bin/python -m pip install --target /tmp/d2lpkgs --no-deps \\
        ipython==9.18.1 ipython_pygments_lexers==1.1.1 matplotlib-inline==0.2.2 traitlets==5.16.1 \\
        jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 \\
        stack-data==0.6.3 asttokens==3.0.2 executing==2.3.0 pure_eval==0.2.4

Usage::

    PYTHONPATH=/tmp/d2lpkgs .venv/bin/python benchmarks/book_lenet.py \\
        [--epochs 10] [--data-root /tmp/d2l-data] [--no-plot] [--threads N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import types

# Headless plotting, and keep IPython's profile/history out of $HOME.  Must precede the imports.
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("IPYTHONDIR", "/tmp/d2l-ipython")

RAW_FILES = {  # uncompressed name -> sha256 (from /work/shared/data/README.md)
    "train-images-idx3-ubyte": "38f293c4a3881af2a3950da2d9954219bc9c3be886ca598c16807d354b06895e",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5f9736a4bcf7606c3eb59c072ae9c6b7d185a31d51df40d6fed6002c324cb812",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
N_TRAIN = 60_000


def default_source_raw() -> str:
    base = os.environ.get("HARNESS_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    return os.path.normpath(os.path.join(base, "FashionMNIST", "raw"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--epochs", type=int, default=10, help="max_epochs of d2l.Trainer (default 10)")
    p.add_argument("--data-root", default="/tmp/d2l-data",
                   help="writable root; uncompressed IDX files go to <root>/FashionMNIST/raw/")
    p.add_argument("--source-raw", default=default_source_raw(),
                   help="directory with the *.gz IDX files to decompress if needed")
    p.add_argument("--no-plot", action="store_true",
                   help="monkeypatch d2l.ProgressBoard.draw to a no-op (exclude plotting cost)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N); default: leave torch's default")
    p.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    return p.parse_args(argv)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_data(data_root: str, source_raw: str) -> dict:
    """Make sure <data_root>/FashionMNIST/raw/ holds the uncompressed IDX files; return digests."""
    raw = os.path.join(data_root, "FashionMNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    digests = {}
    for name, expected in RAW_FILES.items():
        dst = os.path.join(raw, name)
        if not os.path.exists(dst):
            src = os.path.join(source_raw, name + ".gz")
            if not os.path.exists(src):
                sys.exit(f"missing {dst} and no source archive {src} (see --source-raw)")
            tmp = dst + ".part"
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, dst)
            print(f"decompressed {src} -> {dst}")
        got = sha256_file(dst)
        digests[name] = {"sha256": got, "matches_shared_readme": got == expected}
        if got != expected:
            print(f"WARNING: {dst} sha256 {got} differs from the shared data README ({expected})")
    return digests


class TimedLoader:
    """Iterable wrapper around a DataLoader that records the wall time of each full pass."""

    def __init__(self, loader, sink: list):
        self.loader = loader
        self.sink = sink

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        t0 = time.perf_counter()
        stamps = []  # arrival time of each batch
        n_items = 0
        for batch in self.loader:  # iter() here starts the worker processes
            stamps.append(time.perf_counter())
            n_items += len(batch[-1])
            yield batch
        t1 = time.perf_counter()  # after the last step and the DataLoader's worker shutdown
        # per-iteration times (batch i arrival -> batch i+1 arrival: step i + loading i+1);
        # their median is robust to short bursts of load from other processes.
        its = sorted(b - a for a, b in zip(stamps, stamps[1:] + [t1]))
        q = lambda f: its[min(len(its) - 1, int(f * len(its)))] if its else None
        self.sink.append({"s": t1 - t0, "first_batch_s": (stamps[0] if stamps else t1) - t0,
                          "batches": len(stamps), "items": n_items,
                          "iter_s_p10": q(0.1), "iter_s_median": q(0.5), "iter_s_p90": q(0.9)})


def main(argv=None):
    args = parse_args(argv)

    import numpy as np
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()} "
          f"(interop {torch.get_num_interop_threads()}), os.cpu_count()={os.cpu_count()}"
          + ("" if args.threads is not None else " [torch default]"))

    import d2l as d2l_pkg
    from d2l import torch as d2l
    import matplotlib

    data_root = os.path.abspath(args.data_root)
    digests = prepare_data(data_root, args.source_raw)

    # d2l 1.0.3: FashionMNIST(batch_size, resize) -> DataModule.__init__(root='../data',
    # num_workers=4).  Replace only the root default; keep d2l's num_workers default.
    root_default, workers_default = d2l.DataModule.__init__.__defaults__
    d2l.DataModule.__init__.__defaults__ = (data_root, workers_default)

    # ---- ProgressBoard.draw: time it (plot) or replace it by a recorder (no-plot) ------------
    state = {"epoch": 0}
    curves = {}       # label -> per-epoch list of per-call values
    draw_time = {"s": 0.0, "calls": 0}

    def record(label, y):
        per_epoch = curves.setdefault(label, {})
        per_epoch.setdefault(state["epoch"], []).append(float(y))

    if args.no_plot:
        def draw(self, x, y, label, every_n=1):
            record(label, y)
    else:
        orig_draw = d2l.ProgressBoard.draw

        def draw(self, x, y, label, every_n=1):
            record(label, y)
            t0 = time.perf_counter()
            try:
                return orig_draw(self, x, y, label, every_n)
            finally:
                draw_time["s"] += time.perf_counter() - t0
                draw_time["calls"] += 1
    d2l.ProgressBoard.draw = draw

    # ---- the notebook, section 7.6 -------------------------------------------------------------
    def init_cnn(module):
        if type(module) == nn.Linear or type(module) == nn.Conv2d:
            nn.init.xavier_uniform_(module.weight)

    class LeNet(d2l.Classifier):
        def __init__(self, lr=0.1, num_classes=10):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(
                nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
                nn.AvgPool2d(kernel_size=2, stride=2),
                nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(),
                nn.AvgPool2d(kernel_size=2, stride=2),
                nn.Flatten(),
                nn.LazyLinear(120), nn.Sigmoid(),
                nn.LazyLinear(84), nn.Sigmoid(),
                nn.LazyLinear(num_classes))

    trainer = d2l.Trainer(max_epochs=args.epochs, num_gpus=0)
    data = d2l.FashionMNIST(batch_size=128)
    assert data.root == data_root and data.num_workers == workers_default
    model = LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)

    # ---- instrumentation on the trainer instance (d2l's classes stay untouched) --------------
    train_passes, val_passes, epochs = [], [], []
    cls_prepare_data = d2l.Trainer.prepare_data
    cls_fit_epoch = d2l.Trainer.fit_epoch

    def prepare_data_timed(self, data):
        cls_prepare_data(self, data)
        self.train_dataloader = TimedLoader(self.train_dataloader, train_passes)
        if self.val_dataloader is not None:
            self.val_dataloader = TimedLoader(self.val_dataloader, val_passes)

    def fit_epoch_timed(self):
        state["epoch"] = self.epoch
        t0 = time.perf_counter()
        cls_fit_epoch(self)
        epochs.append(time.perf_counter() - t0)

    trainer.prepare_data = types.MethodType(prepare_data_timed, trainer)
    trainer.fit_epoch = types.MethodType(fit_epoch_timed, trainer)

    train_dl = data.get_dataloader(True)
    loader_info = {"batch_size": train_dl.batch_size, "num_workers": train_dl.num_workers,
                   "shuffle_train": True, "persistent_workers": train_dl.persistent_workers,
                   "pin_memory": train_dl.pin_memory, "drop_last": train_dl.drop_last,
                   "train_batches": len(train_dl),
                   "val_batches": len(data.get_dataloader(False))}
    del train_dl
    print(f"d2l {d2l_pkg.__version__}: FashionMNIST DataLoader {loader_info}; "
          f"plot={'off' if args.no_plot else 'on'}; epochs={args.epochs}")

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    trainer.fit(model, data)
    fit_wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    # ---- final metrics (not timed as part of training) ---------------------------------------
    t0 = time.perf_counter()
    model.eval()
    correct, n = 0.0, 0
    with torch.no_grad():
        for X, y in data.get_dataloader(False):
            correct += float(model.accuracy(model(X), y, averaged=False).sum())
            n += len(y)
    eval_s = time.perf_counter() - t0
    val_acc = correct / n

    def epoch_mean(label, e):
        vals = curves.get(label, {}).get(e)
        return float(np.mean(vals)) if vals else None

    per_epoch = []
    for e in range(len(epochs)):
        tr, va = train_passes[e], (val_passes[e] if e < len(val_passes) else None)
        per_epoch.append({
            "epoch": e + 1, "epoch_s": epochs[e], "train_s": tr["s"],
            "train_first_batch_s": tr["first_batch_s"], "train_images": tr["items"],
            "train_images_per_s": tr["items"] / tr["s"],
            "train_iter_s_p10": tr["iter_s_p10"], "train_iter_s_median": tr["iter_s_median"],
            "train_iter_s_p90": tr["iter_s_p90"],
            "train_images_per_s_from_median_iter": 128 / tr["iter_s_median"],
            "val_s": va["s"] if va else None,
            "train_loss_mean": epoch_mean("train_loss", e),
            "book_val_loss": epoch_mean("val_loss", e),
            "book_val_acc": epoch_mean("val_acc", e)})
    train_s = sum(p["s"] for p in train_passes)
    last = per_epoch[-1] if per_epoch else {}
    result = {
        "benchmark": "d2l-1.0.3-book-loop-lenet-fashion-mnist",
        "config": {"epochs": args.epochs, "batch_size": 128, "lr": 0.1, "num_gpus": 0,
                   "plot": not args.no_plot, "seed": 0, "threads": torch.get_num_threads(),
                   "interop_threads": torch.get_num_interop_threads(),
                   "threads_set_explicitly": args.threads is not None,
                   "dataloader": loader_info, "data_root": data_root,
                   "d2l_root_default_replaced": root_default},
        "env": {"python": platform.python_version(), "platform": platform.platform(),
                "processor": platform.processor(), "cpu_count": os.cpu_count(),
                "d2l": d2l_pkg.__version__, "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": np.__version__,
                "matplotlib": matplotlib.__version__,
                "mkldnn": torch.backends.mkldnn.is_available(),
                "loadavg_1_5_15_before_fit": load_before, "loadavg_1_5_15_after_fit": load_after},
        "data_sha256": digests,
        "fit_wall_s": fit_wall,
        "train_s": train_s,
        "train_images_per_s": N_TRAIN * args.epochs / train_s if train_s else None,
        "train_images_per_s_from_median_iter": float(np.median(
            [p["train_images_per_s_from_median_iter"] for p in per_epoch])) if per_epoch else None,
        "val_s": sum(p["s"] for p in val_passes),
        "draw_s": draw_time["s"], "draw_calls": draw_time["calls"],
        "final_val_acc": val_acc, "final_val_images": n, "final_eval_s": eval_s,
        "final_train_loss": last.get("train_loss_mean"),
        "per_epoch": per_epoch,
    }

    print()
    for p in per_epoch:
        print(f"epoch {p['epoch']:2d}: epoch {p['epoch_s']:.2f}s (train {p['train_s']:.2f}s, "
              f"first batch {p['train_first_batch_s']:.2f}s, val {p['val_s']:.2f}s), "
              f"{p['train_images_per_s']:.0f} img/s (median iter {1e3 * p['train_iter_s_median']:.1f} ms"
              f" -> {p['train_images_per_s_from_median_iter']:.0f} img/s), train loss {p['train_loss_mean']:.4f}, "
              f"book val acc {p['book_val_acc']:.4f}")
    print(f"trainer.fit wall:      {fit_wall:.2f} s")
    print(f"training part:         {train_s:.2f} s -> {result['train_images_per_s']:.0f} images/s")
    print(f"  from median iteration: {result['train_images_per_s_from_median_iter']:.0f} images/s "
          f"(128 / median per-batch time; diagnostic, see docstring)")
    print(f"validation part:       {result['val_s']:.2f} s")
    if not args.no_plot:
        print(f"ProgressBoard.draw:    {draw_time['s']:.2f} s in {draw_time['calls']} calls")
    print(f"final val accuracy:    {val_acc:.4f} ({n} images, eval mode)")
    print(f"final train loss:      {result['final_train_loss']:.4f} (mean over last epoch)")
    print(f"load average before/after fit (1 min): {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes slow this benchmark down)")
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json_out}")
    return result


if __name__ == "__main__":
    main()
