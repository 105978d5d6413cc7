"""Reference measurement: the book's own training loop (d2l 1.0.3) for LeNet, VGG and ResNet-18.

The seed notebook's training cells for LeNet (7.6), VGG (8.2) and ResNet-18 (8.6) on Fashion-MNIST,
run through d2l's ``Trainer`` and DataLoaders and timed.

What this runs
--------------
One training cell of the seed notebook, unchanged in substance (``--model``, default ``lenet``)::

    # lenet (7.6)
    trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=128)                       # resize: d2l's default (28, 28)
    model = LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
    trainer.fit(model, data)

    # vgg (8.2)
    model = VGG(arch=((1, 16), (1, 32), (2, 64), (2, 128), (2, 128)), lr=0.01)
    trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=128, resize=(224, 224))
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer.fit(model, data)

    # resnet18 (8.6)
    model = ResNet18(lr=0.01)
    trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=128, resize=(96, 96))
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer.fit(model, data)

The model code (``init_cnn``, ``LeNet``; ``vgg_block``, ``VGG``; ``Residual``, ``ResNet`` with
``block`` and ``__init__`` added by ``d2l.add_to_class``, ``ResNet18``) is copied below from the
notebook (``../shared/seed/000_7475bdd7891cc833.txt``) word for word, with three repairs where
the notebook's text cannot run as printed; each repair restores d2l 1.0.3's own code (the
installed ``d2l.Residual`` and the book's 8.6), as ``harness/models/resnet.py`` does:

* ``Residual``: ``conv1``/``conv2`` are ``nn.LazyConv2d(num_channels, ...)`` (the text has
  ``nn.Conv2d(num_channels, kernel_size=3, ...)``, which lacks ``out_channels`` and raises);
* ``ResNet.__init__``: the head is ``nn.LazyLinear(num_classes)`` (the text has
  ``nn.Linear(num_classes)``);
* ``ResNet18``: the stages are passed as one ``arch`` tuple,
  ``super().__init__(((2, 64), (2, 128), (2, 256), (2, 512)), lr, num_classes)`` (the text lacks
  the opening parenthesis, a syntax error).

The notebook's own outputs (``Residual(3)`` on a 4x3x6x6 batch, ``ResNet18().layer_summary``)
show that the code it ran was the book's.  LeNet uses the notebook's local ``init_cnn``; VGG and
ResNet use ``d2l.init_cnn`` (identical code), as the notebook does.

The loop itself is d2l 1.0.3's ``Trainer.fit`` / ``Trainer.fit_epoch`` with d2l's ``FashionMNIST``
DataLoaders, i.e. per epoch:

* training: ``torch.utils.data.DataLoader(batch_size=128, shuffle=True, num_workers=4)``
  (d2l's ``DataModule`` default ``num_workers=4``; non-persistent workers, so 4 worker processes are
  started every epoch), transform ``Resize((H, H))`` + ``ToTensor()`` applied per image (PIL) in
  the workers (H = 28 lenet, 224 vgg, 96 resnet18); 469 batches (468 x 128 + 1 x 96 = 60,000
  images); per batch: ``Trainer.prepare_batch`` (copy to the GPU if one is used), forward,
  cross-entropy, ``Module.plot('loss')`` (tensor -> CPU -> numpy + ``ProgressBoard.draw``),
  ``zero_grad``, ``backward``, ``torch.optim.SGD(lr).step()``;
* validation: 79 batches over the 10k test set in ``eval()`` / ``no_grad``, plotting val loss and
  val accuracy.

Options and deviations from the notebook (none changes the computation, except ``--train-limit``):

* ``--num-gpus`` (default 1, as the notebook): d2l uses
  ``min(num_gpus, torch.cuda.device_count())`` GPUs, so the loop runs on ``cuda:0`` when there is a
  GPU and on the CPU otherwise (the trainer then moves nothing).  ``--num-gpus 0`` forces the CPU.  The JSON records requested and used GPUs.
* ``--epochs``: the notebook trains every model for 10 epochs.  Default here: 10 for lenet, 1 for
  vgg and resnet18 (one epoch of those is minutes on a GPU and hours on this 2-core CPU); pass
  ``--epochs 10`` for the notebook's full run.  ``train_images_per_s`` is comparable across epoch
  counts only roughly (the first epoch includes CUDA/cuDNN warm-up).
* ``--resize H``: override the model's image size with ``(H, H)`` (defaults above).  Not the
  notebook's setting; recorded in the JSON.
* ``--train-limit N``: after d2l builds its datasets, ``data.train``/``data.val`` are wrapped in
  ``torch.utils.data.Subset`` of their first N and ``max(1, N // 6)`` images, so that a CPU smoke
  check of vgg/resnet18 ends in seconds.  Such numbers are NOT comparable with full runs (the
  start-up of the 4 workers per epoch dominates); the JSON records ``train_limit`` and
  ``full_dataset: false`` and the output says so.
* Data location: d2l 1.0.3's ``FashionMNIST`` has no ``root`` argument; it inherits
  ``DataModule.__init__(root='../data', num_workers=4)``.  This script replaces only the *root*
  default (``d2l.DataModule.__init__.__defaults__``) with ``--data-root`` and keeps
  ``num_workers=4``.  torchvision is still called with ``download=True`` as d2l does, but it finds
  the uncompressed IDX files under ``<data-root>/FashionMNIST/raw/`` and never downloads or checks
  md5s.  If those files are missing the script gunzips them from ``--source-raw`` (the offline copy
  in ``../shared/data/FashionMNIST/raw``).  The sha256 of each uncompressed file is recorded and
  compared with the values in ``../shared/data/README.md`` (the image files are a re-ordered
  rebuild of upstream's, so results may differ slightly from runs on upstream's files).
* Headless: ``MPLBACKEND=Agg``.  With plotting on, ``ProgressBoard.draw`` still does everything it
  does in a notebook: ``use_svg_display()`` (which creates an IPython ``InteractiveShell``), re-plots
  all curves with matplotlib, and ``IPython.display.display(fig)`` renders the figure to SVG (the
  shell's display publisher then prints ``<Figure ...>`` to stdout); only the browser is missing.
  ``IPYTHONDIR`` defaults to ``/tmp/d2l-ipython`` so nothing is written to ``~/.ipython``.
* ``--no-plot`` replaces ``d2l.ProgressBoard.draw`` by a function that only records the value (no
  matplotlib, no IPython).  ``Module.plot`` still runs (including its per-batch tensor->numpy
  conversion, a device-to-host copy on a GPU), as that is part of d2l's ``training_step``.

What is timed (``time.perf_counter``)
-------------------------------------
On CUDA every window below opens and closes with ``torch.cuda.synchronize()``, so queued GPU work
is inside the window it belongs to.

* ``fit_wall_s``: the whole ``trainer.fit(model, data)`` call (creating the DataLoaders, moving the
  model to the GPU, all epochs with their validation passes, and all plotting).  Data loading from
  disk, model construction and ``apply_init`` (a CPU forward pass) happen before and are not
  included.
* per epoch, ``epoch_s``: one call of d2l's ``Trainer.fit_epoch`` (training + validation).
* per epoch, ``train_s``: the training part only.  The trainer's train DataLoader is wrapped (after
  d2l's ``prepare_data``) in a thin iterable; the window opens when ``fit_epoch``'s ``for`` loop
  calls ``iter()`` on it (so it *includes* starting the 4 worker processes and waiting for the first
  batch) and closes when the loop asks for the batch after the last one, i.e. after the last
  optimizer step and the DataLoader's worker shutdown.  It contains everything in the training
  loop body, including ``Module.plot``/``ProgressBoard.draw`` for the train loss (i.e. plotting
  cost, unless ``--no-plot``).  It excludes ``model.train()``, and the validation pass.
  ``train_first_batch_s`` is the part of the window spent until the first batch arrived.
* ``val_s``: the same for the validation DataLoader inside ``fit_epoch``.
* ``draw_s``: total time spent inside ``ProgressBoard.draw`` (train and val), for reporting the
  plotting overhead.
* ``train_images_per_s`` = training images x epochs / sum(train_s) (60,000 x epochs unless
  ``--train-limit``).  This is the headline number.
* ``train_iter_s_median`` (and p10/p90): per-iteration times inside the training window, measured
  from one batch's arrival to the next (so one optimizer step plus waiting for the next batch;
  the last one ends at the window's end).  ``train_images_per_s_from_median_iter`` = 128 / median
  (median over epochs at top level).  These are host-side times without extra synchronisation; on
  a GPU they still track the device because ``Module.plot`` copies every loss to the host (a sync
  point), so the host runs at most one backward + step ahead.  They are diagnostics for a shared
  machine: when another process holds a core, torch's 2 intra-op threads wait on each other and
  iterations slow down by an order of magnitude, so p10 approximates the uncontended step time and
  a large p10/median gap means the run was disturbed.  Report the headline number only from a
  quiet machine.

After training (outside all timed windows) the final validation accuracy is computed exactly over
the validation images (10k unless ``--train-limit``): ``model.eval()``, ``no_grad``,
``data.get_dataloader(False)``, ``trainer.prepare_batch``, summing
``Classifier.accuracy(..., averaged=False)``.  ``final_train_loss`` is the mean of the per-batch
training losses of the last epoch (what the book's ``train_loss`` curve shows); the book's own
batch-averaged ``val_loss``/``val_acc`` of each epoch are recorded too.  The JSON also records the
model, image size, device (``torch.cuda.get_device_name`` on CUDA, else the CPU model) and the
torch / CUDA / cuDNN versions.

Scratch environment (does not touch the project's .venv)
----------------------------------------------------------
d2l 1.0.3 pins old numpy/matplotlib/pandas, so it is installed without dependencies into a target
directory and run with an interpreter that already has torch, torchvision, numpy, pandas,
matplotlib, requests, scipy and pillow (the project's venv, or a GPU image).  Only d2l and the
modules it actually imports are added; ``benchmarks/d2l-wheels.txt`` pins them (d2l, ipython,
pygments, matplotlib-inline, traitlets).  IPython's other declared dependencies (jedi, parso,
prompt_toolkit, wcwidth, pexpect, ptyprocess, stack_data, asttokens, executing, pure_eval,
ipython_pygments_lexers, psutil) are never imported by ``import d2l.torch`` nor by
``ProgressBoard.draw`` with plotting on, so they are left out::

    .venv/bin/python -m pip install --target /tmp/d2lpkgs --no-deps -r benchmarks/d2l-wheels.txt

For a machine without an index, download the wheels here and carry them::

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d /tmp/d2lwheels -r benchmarks/d2l-wheels.txt
    python -m pip install --no-deps --target /tmp/d2lpkgs /tmp/d2lwheels/*.whl

Usage::

    PYTHONPATH=/tmp/d2lpkgs .venv/bin/python benchmarks/book_loop.py \\
        [--model lenet|vgg|resnet18] [--epochs N] [--resize H] [--num-gpus 1] [--train-limit N] \\
        [--data-root /tmp/d2l-data] [--no-plot] [--threads N] [--json OUT.json]
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

RAW_FILES = {  # uncompressed name -> sha256 (from ../shared/data/README.md)
    "train-images-idx3-ubyte": "38f293c4a3881af2a3950da2d9954219bc9c3be886ca598c16807d354b06895e",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5f9736a4bcf7606c3eb59c072ae9c6b7d185a31d51df40d6fed6002c324cb812",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
BATCH_SIZE = 128  # every training cell of the notebook uses d2l.FashionMNIST(batch_size=128)
# model -> (the notebook's image size, default epochs here; the notebook trains 10 epochs each)
MODELS = {"lenet": (28, 10), "vgg": (224, 1), "resnet18": (96, 1)}


def default_source_raw() -> str:
    base = os.environ.get("HARNESS_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    return os.path.normpath(os.path.join(base, "FashionMNIST", "raw"))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet",
                   help="which notebook cell to run (default lenet)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="max_epochs of d2l.Trainer (default 10 for lenet, 1 for vgg and resnet18; "
                        "the notebook uses 10 for all)")
    p.add_argument("--resize", type=positive_int, default=None, metavar="H",
                   help="image size (H, H) instead of the notebook's "
                        "(lenet 28, vgg 224, resnet18 96)")
    p.add_argument("--num-gpus", type=int, default=1,
                   help="num_gpus of d2l.Trainer (default 1, as the notebook; d2l uses "
                        "min(num_gpus, cuda device count), so 1 means the GPU if there is one)")
    p.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                   help="train on the first N images and validate on the first max(1, N // 6) "
                        "(smoke check; numbers are then not comparable with full runs)")
    p.add_argument("--data-root", default="/tmp/d2l-data",
                   help="writable root; uncompressed IDX files go to <root>/FashionMNIST/raw/")
    p.add_argument("--source-raw", default=default_source_raw(),
                   help="directory with the *.gz IDX files to decompress if needed")
    p.add_argument("--no-plot", action="store_true",
                   help="monkeypatch d2l.ProgressBoard.draw to a no-op (exclude plotting cost)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N); default: leave torch's default")
    p.add_argument("--json", dest="json_out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = MODELS[args.model][1]
    return args


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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class TimedLoader:
    """Iterable wrapper around a DataLoader that records the wall time of each full pass.

    `sync` (torch.cuda.synchronize on CUDA, else a no-op) runs at both ends of the window, so GPU
    work queued before the pass is outside it and work queued during the pass is inside it."""

    def __init__(self, loader, sink: list, sync):
        self.loader = loader
        self.sink = sink
        self.sync = sync

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.sync()
        t0 = time.perf_counter()
        stamps = []  # arrival time of each batch
        n_items = 0
        for batch in self.loader:  # iter() here starts the worker processes
            stamps.append(time.perf_counter())
            n_items += len(batch[-1])
            yield batch
        self.sync()
        t1 = time.perf_counter()  # after the last step and the DataLoader's worker shutdown
        # per-iteration times (batch i arrival -> batch i+1 arrival: step i + loading i+1);
        # their median is robust to short bursts of load from other processes.
        its = sorted(b - a for a, b in zip(stamps, stamps[1:] + [t1]))
        q = lambda f: its[min(len(its) - 1, int(f * len(its)))] if its else None
        self.sink.append({"s": t1 - t0, "first_batch_s": (stamps[0] if stamps else t1) - t0,
                          "batches": len(stamps), "items": n_items,
                          "iter_s_p10": q(0.1), "iter_s_median": q(0.5), "iter_s_p90": q(0.9)})


# ---- the notebook's training cells ----------------------------------------------------------
# Each returns (trainer, data, model) ready for trainer.fit.  The model code is the notebook's,
# word for word (repairs marked "repaired", see the module docstring).  Only the cell's constants
# that this script exposes as options are parameters: max_epochs, num_gpus, resize; `limit(data)`
# is the --train-limit hook (a no-op without it), called between building the data and apply_init.

def lenet_cell(d2l, epochs, num_gpus, resize, limit):
    from torch import nn

    # initialize weights
    def init_cnn(module):
        if type(module) == nn.Linear or type(module) == nn.Conv2d:
            nn.init.xavier_uniform_(module.weight)

    # LeNet 5 model
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

    # training LeNet
    trainer = d2l.Trainer(max_epochs=epochs, num_gpus=num_gpus)  # notebook: 10, 1
    data = d2l.FashionMNIST(batch_size=128, resize=resize)  # notebook: d2l's default (28, 28)
    limit(data)
    model = LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
    return trainer, data, model


def vgg_cell(d2l, epochs, num_gpus, resize, limit):
    from torch import nn

    def vgg_block(num_convs, out_channels):
        layers = []
        for _ in range(num_convs):
            layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
            layers.append(nn.ReLU())
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        return nn.Sequential(*layers)

    class VGG(d2l.Classifier):
        def __init__(self, arch, lr=0.1, num_classes=10):
            super().__init__()
            self.save_hyperparameters()
            conv_blks = []
            for (num_convs, out_channels) in arch:
                conv_blks.append(vgg_block(num_convs, out_channels))
            self.net = nn.Sequential(
                *conv_blks, nn.Flatten(),
                nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
                nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
                nn.LazyLinear(num_classes))
            self.net.apply(d2l.init_cnn)

    model = VGG(arch=((1, 16), (1, 32), (2, 64), (2, 128), (2, 128)), lr=0.01)
    trainer = d2l.Trainer(max_epochs=epochs, num_gpus=num_gpus)  # notebook: 10, 1
    data = d2l.FashionMNIST(batch_size=128, resize=resize)  # notebook: (224, 224)
    limit(data)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    return trainer, data, model


def resnet18_cell(d2l, epochs, num_gpus, resize, limit):
    from torch import nn
    from torch.nn import functional as F

    # the residual block
    class Residual(nn.Module):
        def __init__(self, num_channels, use_1x1conv=False, strides=1):
            super().__init__()
            self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1,  # repaired
                                       stride=strides)
            self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)  # repaired
            if use_1x1conv:
                self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1,
                                           stride=strides)
            else:
                self.conv3 = None
            self.bn1 = nn.LazyBatchNorm2d()
            self.bn2 = nn.LazyBatchNorm2d()

        def forward(self, X):
            Y = F.relu(self.bn1(self.conv1(X)))
            Y = self.bn2(self.conv2(Y))
            if self.conv3:
                X = self.conv3(X)
            Y += X
            return F.relu(Y)

    # 7x7 convolutional layer with 64 output channels and stride of 2, followed by a 3x3 max-pool
    class ResNet(d2l.Classifier):
        def b1(self):
            return nn.Sequential(
                nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
                nn.LazyBatchNorm2d(), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    # four modules made up of residual blocks
    @d2l.add_to_class(ResNet)
    def block(self, num_residuals, num_channels, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(Residual(num_channels))
        return nn.Sequential(*blk)

    # average pooling layer followed by fully connected layer output
    @d2l.add_to_class(ResNet)
    def __init__(self, arch, lr=0.1, num_classes=10):
        super(ResNet, self).__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(self.b1())
        for i, b in enumerate(arch):
            self.net.add_module(f'b{i+2}', self.block(*b, first_block=(i==0)))
        self.net.add_module('last', nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))  # repaired
        self.net.apply(d2l.init_cnn)

    class ResNet18(ResNet):
        def __init__(self, lr=0.1, num_classes=10):
            super().__init__(((2, 64), (2, 128), (2, 256), (2, 512)),  # repaired
                             lr, num_classes)

    # training
    model = ResNet18(lr=0.01)
    trainer = d2l.Trainer(max_epochs=epochs, num_gpus=num_gpus)  # notebook: 10, 1
    data = d2l.FashionMNIST(batch_size=128, resize=resize)  # notebook: (96, 96)
    limit(data)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    return trainer, data, model


CELLS = {"lenet": lenet_cell, "vgg": vgg_cell, "resnet18": resnet18_cell}


def main(argv=None):
    args = parse_args(argv)
    resize_h = args.resize or MODELS[args.model][0]
    resize = (resize_h, resize_h)

    import numpy as np
    import torch
    import torchvision
    from torch.utils.data import Subset

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

    # ---- --train-limit: first N training and max(1, N // 6) validation images ----------------
    def limit(data):
        if args.train_limit is None:
            return
        data.train = Subset(data.train, range(min(args.train_limit, len(data.train))))
        data.val = Subset(data.val, range(min(max(1, args.train_limit // 6), len(data.val))))

    # ---- the notebook's cell -------------------------------------------------------------------
    trainer, data, model = CELLS[args.model](d2l, args.epochs, args.num_gpus, resize, limit)
    assert data.root == data_root and data.num_workers == workers_default
    n_train, n_val = len(data.train), len(data.val)
    full_dataset = args.train_limit is None
    not_comparable = (f"--train-limit {args.train_limit}: {n_train} training / {n_val} validation "
                      "images; a smoke check, numbers are NOT comparable with full runs")

    use_cuda = bool(trainer.gpus)
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)  # CPU-GPU sync points
    if use_cuda:
        device = f"{trainer.gpus[0]} ({torch.cuda.get_device_name(trainer.gpus[0])})"
    else:
        device = f"cpu ({cpu_model()})"

    # ---- instrumentation on the trainer instance (d2l's classes stay untouched) --------------
    train_passes, val_passes, epochs = [], [], []
    cls_prepare_data = d2l.Trainer.prepare_data
    cls_fit_epoch = d2l.Trainer.fit_epoch

    def prepare_data_timed(self, data):
        cls_prepare_data(self, data)
        self.train_dataloader = TimedLoader(self.train_dataloader, train_passes, sync)
        if self.val_dataloader is not None:
            self.val_dataloader = TimedLoader(self.val_dataloader, val_passes, sync)

    def fit_epoch_timed(self):
        state["epoch"] = self.epoch
        sync()
        t0 = time.perf_counter()
        cls_fit_epoch(self)
        sync()
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
    print(f"model {args.model} (lr {model.lr}), images {resize[0]}x{resize[1]}, "
          f"{n_train} train / {n_val} val, device {device} "
          f"(num_gpus={args.num_gpus}, {len(trainer.gpus)} used)")
    if not full_dataset:
        print(f"NOTE: {not_comparable}")

    load_before = os.getloadavg()
    sync()
    t0 = time.perf_counter()
    trainer.fit(model, data)
    sync()
    fit_wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    # ---- final metrics (not timed as part of training) ---------------------------------------
    t0 = time.perf_counter()
    model.eval()
    correct, n = 0.0, 0
    with torch.no_grad():
        for batch in data.get_dataloader(False):
            X, y = trainer.prepare_batch(batch)
            correct += float(model.accuracy(model(X), y, averaged=False).sum())
            n += len(y)
    sync()
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
            "train_images_per_s_from_median_iter": BATCH_SIZE / tr["iter_s_median"],
            "val_s": va["s"] if va else None,
            "train_loss_mean": epoch_mean("train_loss", e),
            "book_val_loss": epoch_mean("val_loss", e),
            "book_val_acc": epoch_mean("val_acc", e)})
    train_s = sum(p["s"] for p in train_passes)
    last = per_epoch[-1] if per_epoch else {}
    cudnn_version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    result = {
        "benchmark": f"d2l-1.0.3-book-loop-{args.model}-fashion-mnist",
        "config": {"model": args.model, "resize": list(resize),
                   "resize_overridden": args.resize is not None,
                   "train_limit": args.train_limit, "full_dataset": full_dataset,
                   "train_images": n_train, "val_images": n_val,
                   "epochs": args.epochs, "batch_size": BATCH_SIZE, "lr": model.lr,
                   "num_gpus": args.num_gpus, "gpus_used": len(trainer.gpus),
                   "plot": not args.no_plot, "seed": 0, "threads": torch.get_num_threads(),
                   "interop_threads": torch.get_num_interop_threads(),
                   "threads_set_explicitly": args.threads is not None,
                   "dataloader": loader_info, "data_root": data_root,
                   "d2l_root_default_replaced": root_default},
        "env": {"python": platform.python_version(), "platform": platform.platform(),
                "processor": platform.processor(), "cpu_model": cpu_model(),
                "cpu_count": os.cpu_count(),
                "device": device, "device_type": "cuda" if use_cuda else "cpu",
                "cuda_available": torch.cuda.is_available(),
                "d2l": d2l_pkg.__version__, "torch": torch.__version__,
                "cuda": torch.version.cuda, "cudnn": cudnn_version,
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "torchvision": torchvision.__version__, "numpy": np.__version__,
                "matplotlib": matplotlib.__version__,
                "mkldnn": torch.backends.mkldnn.is_available(),
                "loadavg_1_5_15_before_fit": load_before, "loadavg_1_5_15_after_fit": load_after},
        "data_sha256": digests,
        "fit_wall_s": fit_wall,
        "train_s": train_s,
        "train_images_per_s": n_train * args.epochs / train_s if train_s else None,
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
    print(f"model, device:         {args.model} at {resize[0]}x{resize[1]}, {device}")
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
    if not full_dataset:
        print(f"NOTE: {not_comparable}")
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json_out}")
    return result


if __name__ == "__main__":
    main()
