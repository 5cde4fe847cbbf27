"""Loss-curve PNG shared by the training loops (MEPO networks, refiner)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_loss_curve(log: list[dict], path: Path, keys: list[str] | None = None) -> None:
    """Training losses (moving average) and validation metrics (points) against the step, log scale.

    log: one dict per logged step with "step" and any losses; keys missing from a row are skipped.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array([r["step"] for r in log])
    keys = keys or [k for k in log[0] if k not in ("step", "lr", "seconds")]
    for key in keys:
        vals = np.array([r.get(key, np.nan) for r in log], float)
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        if key.startswith("val_"):
            ax.plot(steps[ok], vals[ok], "o-", lw=2, label=key)
        else:
            k = max(ok.sum() // 40, 1)
            ax.plot(steps[ok][k - 1:], np.convolve(vals[ok], np.ones(k) / k, "valid"), label=key, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.set_title(path.parent.name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
