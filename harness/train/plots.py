"""The training-curve picture the book's ProgressBoard draws: loss and accuracy per epoch, train
and validation, one PNG per experiment (logged to MLflow and kept in the run directory)."""
from __future__ import annotations

from pathlib import Path


def training_curves(history: list[dict], path: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    epochs = list(range(1, len(history) + 1))
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("train", "-"), ("val", "--")):
        loss_ax.plot(epochs, [h[f"{key}_loss"] for h in history], style, marker="o", ms=3, label=f"{key}_loss")
        acc_ax.plot(epochs, [h[f"{key}_acc"] for h in history], style, marker="o", ms=3, label=f"{key}_acc")
    for ax, name in ((loss_ax, "cross-entropy"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
