#!/usr/bin/env python
"""One table for the generative families:  python scripts/compare_generative.py RUN_DIR... [--data-dir D]

Reads finished runs of scripts/train.py (vae, cvae, flow, made, pixelcnn, dcgan, wgan-gp; any subset, any number)
and writes OUT/comparison.md (the Markdown table and its caption), OUT/comparison.json (the same numbers,
strict JSON) and OUT/comparison_samples.png (ten samples of every run). Per run:
    likelihood     each family's own `evaluate` (scripts/evaluate.py's dispatch on metrics.json "model")
                   on the test split of D: the exact NLL of MADE and PixelCNN, the -ELBO and -IWAE bounds
                   of the VAEs, all on ONE fixed binarisation of the test images (nets.data.fixed_binarization),
                   and the flow's NLL of the dequantised grey levels (bits/dim, converted to nats per image);
    sample quality the images of DIR/samples.npz (the first --num-samples of them, the same number for every
                   run) under the fixed classifier of scripts/mnist_classifier.py: the entropy of its
                   predicted classes (log2 10 = 3.32 bits when all ten digits are equally frequent) and the
                   Frechet distance between Gaussians fitted to its 128 penultimate features of the samples
                   and of the test images;
    cost           wall_seconds of metrics.json (training), and the seconds to draw 100 samples (timed here,
                   once, on this machine's current load).
A family that is missing, or whose runs cannot be evaluated, is listed with the reason instead of a number.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # scripts/ (cli, train)
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, if not installed

from nets.checkpoint import save_json_atomic  # noqa: E402
from nets.flags import OneLineParser, non_negative_int, positive_int  # noqa: E402
from nets.harness import UsageError, strict_json  # noqa: E402

FAMILIES = {"made": "autoregressive", "pixelcnn": "autoregressive", "flow": "flow", "vae": "VAE",
            "cvae": "VAE (conditional)", "dcgan": "GAN", "wgan-gp": "GAN (Wasserstein)"}
CAPTION = """\
**Which numbers are comparable.** Rows share the test images (the test split of the data used) and the
classifier. *Exact NLL* (MADE, PixelCNN) and the *-ELBO / -IWAE* bounds (VAE) are nats per image on the same
fixed binarisation of those images, so these two columns compare directly: a bound is an upper bound on
the NLL, and -IWAE is the tighter one. The CVAE's bounds are on -log p(x | label), a different quantity: it is told the
digit (for the true distribution, knowing the label is worth at most log 10 = 2.3 nats per image). The
flow models grey levels dequantised to 256 levels, a continuous density: its bits/dim (converted to nats per
image, 784 ln 2 per bit/dim) are not comparable with the binary-image column at all. The GAN has no
likelihood. *Class entropy* and *Frechet distance* compare samples with the test images in the features of
one fixed MNIST classifier (lower distance is better; entropy near 3.32 bits means all ten digits appear):
comparable across rows, with three caveats: binary samples (MADE, PixelCNN) pay for binarisation (see the
"binarised training digits" row), the CVAE's samples have balanced labels by construction, and a Frechet
distance from few samples is biased upwards (every row uses the same number). Training times and
budgets differ per run (the "train s" column); the sampling times are single measurements on a shared
machine and show the orders of magnitude (MADE and PixelCNN: one network pass per pixel, 784 in all; the
others: one pass)."""


# ==================================================================== sample quality
def class_entropy_bits(predicted: np.ndarray, num_classes: int = 10) -> float:
    """H = -sum_c p_c log2 p_c of the predicted classes' frequencies (0 log 0 = 0)."""
    p = np.bincount(np.asarray(predicted), minlength=num_classes) / len(predicted)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def gaussian_fit(features: np.ndarray) -> tuple:
    """(mean, covariance) of the rows of `features` (N, K), float64 (unbiased covariance, as FID)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    r"""Frechet distance of N(mu1, S1) and N(mu2, S2):  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}).
    tr (S1 S2)^{1/2} = tr (A S2 A)^{1/2} with A = S1^{1/2} (same eigenvalues, and symmetric: eigh suffices)."""
    values, vectors = np.linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T                 # S1^{1/2}
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


class Classifier:
    """scripts/mnist_classifier.py's CNN (trained once and cached): 128 penultimate features and the class."""

    def __init__(self, path: str | None = None):
        import nets
        import mnist_classifier
        self.net = mnist_classifier.load_or_train(path or mnist_classifier.DEFAULT_PATH)
        self.head = self.net.fc2
        self.net.fc2 = nets.Identity()          # forward() now ends at relu(fc1(...)): (N, 128)

    def __call__(self, images: np.ndarray, batch_size: int = 500) -> tuple:
        from autodiff import Tensor, no_grad
        images = np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28)
        self.net.eval()
        with no_grad():
            features = np.concatenate([self.net(Tensor(images[i:i + batch_size])).data
                                       for i in range(0, len(images), batch_size)])
            predicted = self.head(Tensor(features)).data.argmax(axis=1)
        return features, predicted


def classes_covered(predicted: np.ndarray, min_share: float = 0.02, num_classes: int = 10) -> int:
    """How many classes get at least `min_share` of the predictions (a fifth of a fair 10%)."""
    return int((np.bincount(np.asarray(predicted), minlength=num_classes) >= min_share * len(predicted)).sum())


def sample_quality(images: np.ndarray, classifier, reference: tuple) -> dict:
    features, predicted = classifier(images)
    return {"class_entropy_bits": class_entropy_bits(predicted), "classes_covered": classes_covered(predicted),
            "frechet_distance": frechet_distance(*gaussian_fit(features), *reference),
            "class_histogram": np.bincount(predicted, minlength=10).tolist()}


# ==================================================================== likelihoods (scripts/evaluate.py's dispatch)
def evaluate_run(run_dir: str, model: str, data_dir, seed: int) -> dict:
    """What `python scripts/evaluate.py DIR` prints (its dispatch reads the model from DIR/metrics.json)."""
    import evaluate
    return evaluate.evaluate_run(run_dir, data_dir, seed)


def likelihood_columns(model: str, result: dict) -> dict:
    """The family's evaluate() output -> the table's columns (nats per image unless named otherwise)."""
    if model in ("made", "pixelcnn"):
        return {"exact_nll_nats": result["test_nll_nats"]}
    if model in ("vae", "cvae"):
        return {"neg_elbo_nats": result["test_neg_elbo_nats_binarized"],
                "neg_iwae_nats": result["test_iwae_nats_binarized"], "iwae_k": result.get("k")}
    if model == "flow":
        return {"flow_bits_per_dim": result["test_bits_per_dim"], "flow_nll_nats": result["test_nll_nats"]}
    return {}


# ==================================================================== sampling time
def _checkpoint(run_dir: str) -> dict:
    from nets.checkpoint import load_checkpoint
    return load_checkpoint(os.path.join(run_dir, "checkpoint.npz"))


def load_sampler(run_dir: str, model: str):
    """draw(n, rng) -> images (n, 28, 28) in [0, 1], from the run's checkpoint, for each family."""
    import models
    from nets.harness import config_from
    checkpoint = _checkpoint(run_dir)
    family = models.load(model)
    net = family.build(config_from(family.Config, checkpoint["meta"]["config"]))
    if model in ("dcgan", "wgan-gp"):
        from cli.dcgan import to_unit
        net.G.load_state_dict(checkpoint["G"])
        return lambda n, rng: to_unit(family.generate(net.G, family.sample_noise(n, net.noise_dim, rng)))
    net.load_state_dict(checkpoint["model"])                      # (MADE's masks are buffers: loaded too)
    if model == "cvae":
        return lambda n, rng: net.sample(n, np.arange(n) % 10, rng=rng)
    return lambda n, rng: net.sample(n, rng=rng)


def seconds_for_100(draw, rng: np.random.Generator) -> float:
    start = time.perf_counter()
    images = np.asarray(draw(100, rng))
    seconds = time.perf_counter() - start
    if images.size != 100 * 784:
        raise ValueError(f"drawing 100 samples returned an array of shape {images.shape}")
    return seconds


# ==================================================================== the table
def read_run(run_dir: str) -> tuple:
    """(metrics.json as a dict, samples.npz images (N, 28, 28)); UsageError naming what is missing."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise UsageError(f"{path} not found: each RUN_DIR must be a folder written by scripts/train.py")
    with open(path) as f:
        metrics = json.load(f)
    if metrics.get("model") not in FAMILIES:
        raise UsageError(f"{path} holds a {metrics.get('model')!r} run; this table compares "
                         f"{', '.join(FAMILIES)}")
    samples_path = os.path.join(run_dir, "samples.npz")
    if not os.path.exists(samples_path):
        raise UsageError(f"{samples_path} not found: the run has no samples (unfinished?)")
    with np.load(samples_path) as data:
        images = np.asarray(data["images"], dtype=np.float32)
    if images.ndim < 2 or images[0].size != 784 or images.min() < 0 or images.max() > 1:
        raise UsageError(f"{samples_path}: expected images (N, 28, 28) in [0, 1], got shape {images.shape} "
                         f"with values in [{images.min()}, {images.max()}]")
    return metrics, images.reshape(-1, 28, 28)


def compare(run_dirs, test_images: np.ndarray, classifier, *, data_dir=None, seed: int = 0,
            num_samples: int = 1000, train_images: np.ndarray | None = None,
            evaluate=evaluate_run, sampler=load_sampler) -> dict:
    """Every number of the table as a dict (see the module docstring). `evaluate(run_dir, model, data_dir,
    seed)` and `sampler(run_dir, model)` are the families' own functions by default (tests pass stubs)."""
    runs = [(d, *read_run(d)) for d in run_dirs]
    n = min([num_samples] + [len(images) for _, _, images in runs])
    reference = gaussian_fit(classifier(test_images)[0])
    rows = []
    for run_dir, metrics, images in runs:
        model = metrics["model"]
        row = {"run": run_dir, "model": model, "family": FAMILIES[model],
               "train_seconds": metrics.get("wall_seconds"), "notes": []}
        try:
            if model not in ("dcgan", "wgan-gp"):        # a GAN has no likelihood to evaluate
                row.update(likelihood_columns(model, evaluate(run_dir, model, data_dir, seed)))
        except Exception as error:                   # one broken family must not hide the others' numbers
            row["notes"].append(f"no likelihood: {type(error).__name__}: {error}")
        row.update(sample_quality(images[:n], classifier, reference))
        try:
            row["sample_100_seconds"] = seconds_for_100(sampler(run_dir, model), np.random.default_rng(seed))
        except Exception as error:
            row["notes"].append(f"sampling not timed: {type(error).__name__}: {error}")
        rows.append(row)
    references = []
    if train_images is not None and len(train_images) >= n:
        from nets.data import fixed_binarization
        picks = np.random.default_rng(seed).choice(len(train_images), n, replace=False)
        for name, images in (("training digits", train_images[picks]),
                             ("binarised training digits", fixed_binarization(train_images[picks]))):
            references.append({"run": name, "model": "data", "family": "(reference)",
                               **sample_quality(np.asarray(images).reshape(-1, 28, 28), classifier, reference)})
    given = {row["model"] for row in rows}
    return {"rows": rows, "references": references, "num_samples": n, "n_test": len(test_images),
            "data": data_dir or "the embedded validation digits", "seed": seed,
            "missing_families": [m for m in FAMILIES if m not in given], "caption": CAPTION}


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 1 else f"{value:.1f}"


def markdown(result: dict) -> str:
    header = ("| run | family | exact NLL (nats) | -ELBO / -IWAE (nats) | flow: bits/dim = nats | "
              "class entropy (bits) | Frechet distance | train s | 100 samples s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in result["rows"] + result["references"]:
        bounds = (f"{_number(row['neg_elbo_nats'])} / {_number(row['neg_iwae_nats'])}"
                  if "neg_elbo_nats" in row else "-")
        flow = (f"{_number(row['flow_bits_per_dim'], 3)} = {_number(row['flow_nll_nats'], 0)}"
                if "flow_bits_per_dim" in row else "-")
        folder = os.path.basename(row["run"].rstrip("/"))
        name = row["run"] if row["model"] == "data" else f"{row['model']} (`{folder}`)"
        lines.append(f"| {name} | {row['family']} | "
                     f"{_number(row.get('exact_nll_nats'))} | {bounds} | {flow} | "
                     f"{_number(row['class_entropy_bits'], 2)} | {_number(row['frechet_distance'])} | "
                     f"{_number(row.get('train_seconds'), 0)} | {_seconds(row.get('sample_100_seconds'))} |")
    notes = [f"- {row['model']} (`{row['run']}`): {note}" for row in result["rows"] for note in row["notes"]]
    if result["missing_families"]:
        notes.append(f"- no run given for: {', '.join(result['missing_families'])}")
    setup = (f"Test images: {result['n_test']} ({result['data']}); sample quality from the first "
             f"{result['num_samples']} samples of each run.")
    return "\n".join(lines + ["", setup, "", result["caption"]] + ([""] + notes if notes else [])) + "\n"


def save_samples_figure(path: str, run_dirs, per_row: int = 10) -> None:
    from cli.common import save_image_grid
    images, labels = [], []
    for run_dir in run_dirs:
        metrics, samples = read_run(run_dir)
        images.append(samples[:per_row])
        labels.append(metrics["model"])
    save_image_grid(path, np.concatenate(images), len(images), per_row, title="samples of each run",
                    row_labels=labels)


# ==================================================================== command line
def main(argv=None) -> int:
    parser = OneLineParser(prog="compare_generative.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders written by scripts/train.py")
    parser.add_argument("--data-dir", default=None, help="standard MNIST files (default: the embedded digits)")
    parser.add_argument("--out", default=os.path.join("runs", "compare-generative"), help="output folder")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="Monte-Carlo estimates and sampling noise")
    parser.add_argument("--num-samples", type=positive_int, default=1000, help="samples per run for sample quality")
    parser.add_argument("--classifier", default=None, help="weights of scripts/mnist_classifier.py (default: "
                        "~/.cache/mnist_classifier/cnn.npz, trained there the first time, a few minutes)")
    args = parser.parse_args(argv)
    try:
        from nets.data import load_mnist
        for run_dir in args.run_dirs:
            read_run(run_dir)                            # every folder is checked before the slow part
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out {args.out}: cannot create the folder ({error.strerror})") from None
        try:
            test_images = load_mnist("test", args.data_dir)[0]
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--data-dir {args.data_dir}: {error}") from None
        try:
            train_images = load_mnist("train", args.data_dir)[0]
        except (FileNotFoundError, ValueError):
            train_images = None                          # e.g. only the t10k files: no reference rows
        result = compare(args.run_dirs, test_images, Classifier(args.classifier), data_dir=args.data_dir,
                         seed=args.seed, num_samples=args.num_samples, train_images=train_images)
    except UsageError as error:
        print(f"compare_generative.py: error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "comparison.md"), "w") as f:
        f.write(markdown(result))
    save_json_atomic(os.path.join(args.out, "comparison.json"), strict_json(result))
    save_samples_figure(os.path.join(args.out, "comparison_samples.png"), args.run_dirs)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
