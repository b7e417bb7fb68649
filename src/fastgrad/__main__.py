"""Command line: ``python -m fastgrad demo`` (also the ``fastgrad`` script).

The demo trains two small models end to end and checks what it claims:

1. micrograd's demo: MLP(2, [16, 16, 1]) on 100 two-moons points, max-margin
   loss plus 1e-4 L2, plain SGD with a decaying learning rate.
2. A 3-class spiral with the seed's stack: mini-batches from a DataLoader,
   softmax + cross-entropy, Adam with weight decay (biases spared), dropout.
3. A checkpoint of (2) is saved, loaded into a fresh model and optimizer,
   and the predictions must be identical.
4. With matplotlib installed, a decision-boundary PNG of each model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

import fastgrad
from fastgrad import (
    MLP,
    SGD,
    Adam,
    DataLoader,
    Value,
    cross_entropy,
    hinge,
    load_checkpoint,
    make_moons,
    make_spiral,
    no_grad,
    save_checkpoint,
    softmax,
)


class Progress:
    """tqdm when it is installed, else one status line rewritten in place."""

    def __init__(self, total: int, desc: str, quiet: bool = False) -> None:
        self.total, self.desc, self.quiet, self.n = total, desc, quiet, 0
        self.start = time.perf_counter()
        self.bar = None
        if not quiet:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=desc, leave=True, dynamic_ncols=True)

    def update(self, **stats: Any) -> None:
        self.n += 1
        text = ", ".join(f"{k}={v}" for k, v in stats.items())
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.n == self.total or self.n % max(1, self.total // 20) == 0:
            end = "\n" if self.n == self.total else ""
            print(f"\r{self.desc}: {self.n}/{self.total} {text}", end=end, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def accuracy_moons(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    with no_grad():
        scores = [model(row) for row in X.tolist()]
    return float(np.mean([(s.data > 0) == (yi > 0) for s, yi in zip(scores, y)]))


def train_moons(steps: int, quiet: bool) -> tuple[MLP, np.ndarray, np.ndarray]:
    """micrograd's demo.ipynb, on fastgrad."""
    X, y01 = make_moons(100, noise=0.1, seed=1)
    y = (y01 * 2 - 1).astype(float)               # labels -1 / +1
    model = MLP(2, [16, 16, 1])
    params = model.parameters()
    optimizer = SGD(params, lr=1.0)
    rows, labels = X.tolist(), y.tolist()
    bar = Progress(steps, "moons (SGD)", quiet)
    for k in range(steps):
        scores = [model(row) for row in rows]
        data_loss = hinge(scores, labels)
        reg_loss = 1e-4 * fastgrad.sum([p * p for p in params])
        loss = data_loss + reg_loss
        acc = np.mean([(s.data > 0) == (yi > 0) for s, yi in zip(scores, labels)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.param_groups[0]["lr"] = 1.0 - 0.9 * k / steps
        optimizer.step()
        bar.update(loss=f"{loss.data:.4f}", acc=f"{acc:.0%}")
    bar.close()
    print(f"moons: loss {loss.data:.4f}, accuracy {accuracy_moons(model, X, y):.0%}, "
          f"{steps / bar.elapsed:.1f} steps/s ({bar.elapsed:.2f} s)")
    return model, X, y


def predict_classes(model: MLP, X: Iterable[Any]) -> list[int]:
    with no_grad():
        return [int(np.argmax([v.data for v in model(row)])) for row in X]


def train_spiral(epochs: int, quiet: bool) -> tuple[MLP, Adam, np.ndarray, np.ndarray]:
    """The seed's mini-batch loop: softmax + cross-entropy, Adam, dropout."""
    X, y = make_spiral(100, 3, noise=0.2, seed=2)
    model = MLP(2, [32, 32, 3], dropout=0.05)
    optimizer = Adam(model.named_parameters(), lr=0.02, weight_decay=1e-4)
    loader = DataLoader((X, y), batch_size=32, shuffle=True, seed=3)
    bar = Progress(epochs, "spiral (Adam)", quiet)
    samples = 0
    for _ in range(epochs):
        model.train()
        total = 0.0
        for x_batch, y_batch in loader:
            batch_loss = Value(0.0)
            for x_vals, target in zip(x_batch.tolist(), y_batch.tolist()):
                probs = softmax(model(x_vals))
                batch_loss = batch_loss + cross_entropy(probs, target)
            batch_loss = batch_loss / len(x_batch)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.data * len(x_batch)
            samples += len(x_batch)
        model.eval()
        acc = np.mean(np.array(predict_classes(model, X.tolist())) == y)
        bar.update(loss=f"{total / len(X):.4f}", acc=f"{acc:.0%}")
    bar.close()
    print(f"spiral: loss {total / len(X):.4f}, accuracy {acc:.0%}, "
          f"{samples / bar.elapsed:,.0f} samples/s ({bar.elapsed:.2f} s)")
    return model, optimizer, X, y


def check_checkpoint(model: MLP, optimizer: Adam, X: np.ndarray, path: str) -> None:
    save_checkpoint(model, optimizer, path, demo="spiral", samples=len(X))
    fastgrad.manual_seed(12345)                    # a fresh model: other weights
    fresh = MLP(2, [32, 32, 3], dropout=0.05).eval()
    fresh_opt = Adam(fresh.named_parameters(), lr=0.02, weight_decay=1e-4)
    meta = load_checkpoint(fresh, fresh_opt, path)
    rows = X.tolist()
    with no_grad():
        before = [[v.data for v in model(r)] for r in rows]
        after = [[v.data for v in fresh(r)] for r in rows]
    if before != after:
        raise SystemExit("checkpoint check FAILED: reloaded model predicts differently")
    print(f"checkpoint: saved to {path} and reloaded into a fresh model "
          f"(meta {meta}): {len(rows)} predictions identical")


def plot_boundaries(models: list[tuple[str, Any, np.ndarray, np.ndarray, bool]], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is not installed; skipping the decision-boundary PNG")
        return False
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5))
    for ax, (title, model, X, y, binary) in zip(np.atleast_1d(axes), models):
        lo, hi = X.min(0) - 0.5, X.max(0) + 0.5
        xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80))
        grid = np.c_[xx.ravel(), yy.ravel()].tolist()
        with no_grad():
            if binary:
                z = np.array([model(p).data > 0 for p in grid], dtype=float)
            else:
                z = np.array(predict_classes(model, grid), dtype=float)
        ax.contourf(xx, yy, z.reshape(xx.shape), alpha=0.35, cmap="Spectral")
        ax.scatter(X[:, 0], X[:, 1], c=y, s=14, cmap="Spectral", edgecolors="k", linewidths=0.3)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: decision boundaries written to {path}")
    return True


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastgrad demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="SGD steps on two-moons (100)")
    parser.add_argument("--epochs", type=int, default=60, help="epochs on the spiral (60)")
    parser.add_argument("--seed", type=int, default=0, help="fastgrad.manual_seed (0)")
    parser.add_argument("--out", default=".", help="folder for the checkpoint and PNG (.)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.epochs < 1:
        parser.error(f"--steps and --epochs must be >= 1, got {args.steps} and {args.epochs}")
    os.makedirs(args.out, exist_ok=True)
    fastgrad.manual_seed(args.seed)
    start = time.perf_counter()
    moons, Xm, ym = train_moons(args.steps, args.quiet)
    spiral, optimizer, Xs, ys = train_spiral(args.epochs, args.quiet)
    check_checkpoint(spiral, optimizer, Xs, os.path.join(args.out, "fastgrad-demo-ckpt.json"))
    if not args.no_plot:
        plot_boundaries([("two moons: MLP(2,[16,16,1]), SGD", moons, Xm, ym, True),
                         ("spiral: MLP(2,[32,32,3]), Adam", spiral, Xs, ys, False)],
                        os.path.join(args.out, "fastgrad-demo.png"))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": demo}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"fastgrad: unknown command {argv[0]!r} (accepted: {', '.join(commands)})",
                  file=sys.stderr)
            return 2
        print("usage: python -m fastgrad demo [--steps N] [--epochs N] [--out DIR] ...")
        return 0 if argv else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
