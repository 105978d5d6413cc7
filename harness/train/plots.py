"""Training curves as the book's ProgressBoard draws them: the training loss per batch (sampled: the
mean of each window of batches, at most BATCH_POINTS_PER_EPOCH points an epoch, x in fractional
epochs), the per-epoch losses and accuracies at whole epochs, a chance-level line on the accuracy
panel, and a title with the settings and the run id.

- `training_curves`: one experiment's PNG (plots/<experiment>.png), written by the loop;
- `side_by_side`: every training experiment of a run on the same axes (plots/training.png), written
  by harness.run.plots after the suite's experiments ran, from steps.csv's records.

The per-batch loss is the metric `train_loss_batch` in steps.csv and MLflow, its step the global
batch number (1-based) at the end of its window; fractional epochs are step / batches per epoch
(`curves_from_steps`). matplotlib (Agg) is imported inside the functions. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

BATCH_METRIC = "train_loss_batch"
BATCH_POINTS_PER_EPOCH = 50  # as ProgressBoard's every_n: a readable line whatever the number of batches
NUM_CLASSES = 10  # Fashion-MNIST
CHANCE = 1 / NUM_CLASSES  # accuracy of a uniform guess
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class Curves:
    """One experiment's series: per-epoch metrics (history[e] is epoch e + 1) and (epoch, loss) points."""

    history: list[dict] = field(default_factory=list)
    batches: list[tuple[float, float]] = field(default_factory=list)


def settings(model, lr, batch_size, epochs, train_images, determinism, device) -> list[tuple[str, str]]:
    """(key, text) of the settings a title or legend names; `device` is already text, e.g. 'cpu (Xeon)'."""
    images = f"{train_images:,} train images" if train_images else "train images unknown"
    return [("model", str(model)), ("lr", f"lr {lr:g}"), ("batch", f"batch {batch_size}"),
            ("epochs", f"{epochs} epoch{'s' if epochs != 1 else ''}"), ("images", images),
            ("determinism", str(determinism)), ("device", str(device))]


def experiment_title(exp_id: str, setting: list[tuple[str, str]], run_id: str) -> str:
    return f"{exp_id}: {' · '.join(text for _, text in setting)}\nrun {run_id}"


def curves_from_steps(steps: list[dict]) -> Curves:
    """One experiment's records of steps.csv (dicts with step, metric, value) as Curves."""
    epochs: dict[int, dict] = {}
    batch: dict[int, float] = {}
    for s in steps:
        if s["metric"] in EPOCH_KEYS:
            epochs.setdefault(int(s["step"]), {})[s["metric"]] = float(s["value"])
        elif s["metric"] == BATCH_METRIC:
            batch[int(s["step"])] = float(s["value"])
    history = [epochs[e] for e in sorted(epochs)]
    points = []
    if batch and epochs:  # every epoch's last window ends on its last batch: the largest step is n_epochs x batches
        per_epoch = max(batch) / max(epochs)
        points = [(step / per_epoch, loss) for step, loss in sorted(batch.items())]
    return Curves(history, points)


def training_curves(curves: Curves, path: Path, *, title: str = "") -> Path:
    """One experiment: loss (per batch, and per epoch: train and validation) and accuracy."""
    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.9))
    epochs = list(range(1, len(curves.history) + 1))
    if curves.batches:
        loss_ax.plot(*zip(*curves.batches), "-", lw=1, alpha=0.8, color="#636EFA", label="train_loss (per batch)")
    for key, style, colour in (("train", "-o", "#636EFA"), ("val", "--o", "#EF553B")):
        loss_style = "o" if key == "train" and curves.batches else style  # the batch line joins the epochs
        loss_ax.plot(epochs, [h.get(f"{key}_loss") for h in curves.history], loss_style, ms=4, color=colour,
                     label=f"{key}_loss (epoch mean)")
        acc_ax.plot(epochs, [h.get(f"{key}_acc") for h in curves.history], style, ms=4, color=colour,
                    label=f"{key}_acc")
    _chance(acc_ax)
    for ax, name in ((loss_ax, "cross-entropy"), (acc_ax, "accuracy")):
        _epoch_axis(ax, len(curves.history))
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    return save(fig, plt, path, title)


def side_by_side(curves: dict[str, Curves], path: Path, *, colours: dict[str, str], labels: dict[str, str],
                 title: str = "") -> Path:
    """Every experiment on the same axes: training loss per batch (each epoch's mean marked) and
    validation accuracy per epoch, one colour per experiment (`colours`), legend text `labels`."""
    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.6))
    n_epochs = max((len(c.history) for c in curves.values()), default=0)
    for exp_id, c in curves.items():
        colour, label = colours[exp_id], labels.get(exp_id, exp_id)
        epochs = list(range(1, len(c.history) + 1))
        if c.batches:
            loss_ax.plot(*zip(*c.batches), "-", lw=1.2, alpha=0.85, color=colour, label=label)
            loss_ax.plot(epochs, [h.get("train_loss") for h in c.history], "o", ms=4, color=colour)
        else:  # a run recorded before the per-batch loss: the epoch means alone
            loss_ax.plot(epochs, [h.get("train_loss") for h in c.history], "-o", ms=4, color=colour, label=label)
        acc_ax.plot(epochs, [h.get("val_acc") for h in c.history], "-o", ms=4, color=colour, label=label)
    _chance(acc_ax)
    loss_ax.set_title("training loss (per batch; dots: epoch mean)", fontsize=10)
    acc_ax.set_title("validation accuracy", fontsize=10)
    for ax, name in ((loss_ax, "cross-entropy"), (acc_ax, "accuracy")):
        _epoch_axis(ax, n_epochs)
        ax.set_ylabel(name)
    acc_ax.legend(fontsize=8, loc="best")
    return save(fig, plt, path, title)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _chance(ax) -> None:
    ax.axhline(CHANCE, color="#888888", ls=":", lw=1.2, label=f"chance ({CHANCE:g})")
    ax.set_ylim(0, 1)


def _epoch_axis(ax, n_epochs: int) -> None:
    """Whole epochs on the x axis, from 0 (the start) to the last epoch."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0, max(n_epochs, 1) + 0.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def save(fig, plt, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
