#!/usr/bin/env python
"""An independent MNIST classifier, to check that a conditional model draws the digits it is asked for.

    python scripts/mnist_classifier.py train [--path P] [--test-dir /path/to/mnist]   # train, save, report
    python scripts/mnist_classifier.py check RUN_DIR [--path P]    # accuracy on RUN_DIR/samples.npz labels

    from mnist_classifier import load_or_train, classify
    predicted = classify(images)          # images (N, 28, 28) or (N, 784) in [0, 1] -> int labels (N,)

A small CNN (conv5x5-16, pool, conv5x5-32, pool, fc128, fc10) written with this project's engine and
trained on the 4,500 embedded training digits, with random shifts of up to 2 pixels as augmentation.
The 500 embedded validation digits pick the best epoch. It is a tool, not part of the test suite; the
weights are cached (default ~/.cache/mnist_classifier/cnn.npz) so checking a run takes seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo

import autodiff.functional as F  # noqa: E402
import nets  # noqa: E402
from autodiff import Tensor, no_grad  # noqa: E402
from nets.data import iterate_minibatches, load_mnist  # noqa: E402

DEFAULT_PATH = os.path.expanduser(os.path.join("~", ".cache", "mnist_classifier", "cnn.npz"))
EPOCHS, BATCH_SIZE, LR, MAX_SHIFT, SEED = 15, 64, 1e-3, 2, 0


class ConvNet(nets.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nets.Conv2d(1, 16, 5, padding=2)      # (N, 16, 28, 28) -> pool -> (N, 16, 14, 14)
        self.conv2 = nets.Conv2d(16, 32, 5, padding=2)     # (N, 32, 14, 14) -> pool -> (N, 32, 7, 7)
        self.fc1 = nets.Linear(32 * 7 * 7, 128)
        self.fc2 = nets.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.reshape(len(h.data), -1))))


def _as_images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 2 or images[0].size != 784:
        raise ValueError(f"expected MNIST images (N, 28, 28), (N, 1, 28, 28) or (N, 784), got {images.shape}")
    return images.reshape(len(images), 1, 28, 28)


def _shift(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each image by up to MAX_SHIFT pixels in x and y (zeros come in at the border)."""
    padded = np.pad(batch, ((0, 0), (0, 0), (MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT)))
    out = np.empty_like(batch)
    for i, (dy, dx) in enumerate(rng.integers(0, 2 * MAX_SHIFT + 1, size=(len(batch), 2))):
        out[i] = padded[i, :, dy:dy + 28, dx:dx + 28]
    return out


def predict(model: ConvNet, images, batch_size: int = 500) -> np.ndarray:
    images = _as_images(images)
    model.eval()
    with no_grad():
        return np.concatenate([model(Tensor(images[i:i + batch_size])).data.argmax(axis=1)
                               for i in range(0, len(images), batch_size)]) if len(images) else np.zeros(0, int)


def train(path: str = DEFAULT_PATH, verbose: bool = True) -> ConvNet:
    nets.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    x_train, y_train = load_mnist("train")
    x_val, y_val = load_mnist("test")          # the embedded validation digits
    model = ConvNet()
    optimizer = nets.Adam(model.parameters(), lr=LR)
    best, best_state = -1.0, None
    from tqdm import tqdm
    bar = tqdm(total=EPOCHS * -(-len(x_train) // BATCH_SIZE), desc="training the MNIST classifier", unit=" batch",
               dynamic_ncols=True, disable=not verbose or bool(os.environ.get("NO_PROGRESS")))
    for epoch in range(EPOCHS):
        model.train()
        for xb, yb in iterate_minibatches(x_train, y_train, batch_size=BATCH_SIZE, rng=rng):
            loss = nets.losses.cross_entropy(model(Tensor(_shift(xb, rng))), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update()
        accuracy = float(np.mean(predict(model, x_val) == y_val))
        bar.set_postfix(epoch=epoch + 1, val_accuracy=f"{accuracy:.4f}")
        if verbose:
            bar.write(f"epoch {epoch + 1}/{EPOCHS}: validation accuracy {accuracy:.4f}", file=sys.stderr)
        if accuracy > best:
            best, best_state = accuracy, model.state_dict()
    bar.close()
    model.load_state_dict(best_state)
    model.save(path)
    return model


def load_or_train(path: str = DEFAULT_PATH) -> ConvNet:
    model = ConvNet()
    if os.path.exists(path):
        model.load(path)
        return model
    print(f"no classifier at {path}: training one (a few minutes; cached there afterwards) ...", file=sys.stderr)
    return train(path)


_cached = {}


def classify(images, path: str = DEFAULT_PATH) -> np.ndarray:
    """Predicted digit (int, (N,)) for images in [0, 1]."""
    if path not in _cached:
        _cached[path] = load_or_train(path)
    return predict(_cached[path], images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train and save the classifier, report its accuracy")
    p_train.add_argument("--path", default=DEFAULT_PATH)
    p_train.add_argument("--test-dir", default=None, help="standard MNIST files: report the t10k accuracy")
    p_check = sub.add_parser("check", help="fraction of RUN_DIR/samples.npz classified as their label")
    p_check.add_argument("run_dir")
    p_check.add_argument("--path", default=DEFAULT_PATH)
    args = parser.parse_args(argv)

    if args.command == "train":
        model = train(args.path)
        report = {"path": args.path,
                  "val_accuracy": float(np.mean(predict(model, load_mnist("test")[0]) == load_mnist("test")[1]))}
        if args.test_dir:
            x_test, y_test = load_mnist("test", args.test_dir)
            report["test_accuracy"] = float(np.mean(predict(model, x_test) == y_test))
            report["n_test"] = len(y_test)
        print(json.dumps(report))
        return 0

    with np.load(os.path.join(args.run_dir, "samples.npz")) as data:
        if "labels" not in data.files:
            print(f"{args.run_dir}/samples.npz has no labels (not a conditional model)", file=sys.stderr)
            return 2
        images, labels = data["images"], data["labels"]
    predicted = classify(images, args.path)
    per_class = {int(c): float(np.mean(predicted[labels == c] == c)) for c in np.unique(labels)}
    print(json.dumps({"run": args.run_dir, "n": len(labels), "accuracy": float(np.mean(predicted == labels)),
                      "per_class": per_class}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
