#!/usr/bin/env python
"""Evaluate a finished run:  python scripts/evaluate.py DIR [--data-dir D]

Prints ONE JSON line. For the VAE/CVAE: test_neg_elbo_nats and test_iwae_nats; for flows:
test_bits_per_dim; for MADE/PixelCNN: test_nll_nats (exact, on the fixed binarisation); measured
on the test split of D (default: the embedded validation split).
Which model DIR holds is read from DIR/metrics.json ("model").
"""
import argparse
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets.flags import OneLineParser, UsageError, non_negative_int  # noqa: E402
from train import COMMANDS  # noqa: E402


def evaluate_run(run_dir: str, data_dir=None, seed: int = 0) -> dict:
    """The family's evaluate(...) for the run in run_dir (its metrics.json names the model)."""
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(metrics_path):
        raise UsageError(f"{metrics_path} not found: DIR must be a folder written by scripts/train.py")
    try:
        with open(metrics_path) as f:
            model = json.load(f).get("model")
    except (ValueError, AttributeError, OSError) as error:
        raise UsageError(f"{metrics_path} is not a run's metrics ({error})") from None
    if model not in COMMANDS:
        raise UsageError(f"{metrics_path} names model {model!r}; known models: {sorted(COMMANDS)}")
    module = importlib.import_module(COMMANDS[model])
    if not hasattr(module, "evaluate"):
        raise UsageError(f"evaluate.py has nothing to measure for model {model!r}")
    return module.evaluate(run_dir, model, data_dir, seed)


def main(argv=None) -> int:
    parser = OneLineParser(prog="evaluate.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="DIR", help="a folder written by scripts/train.py")
    parser.add_argument("--data-dir", default=None, help="standard MNIST files (default: embedded digits)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for the Monte-Carlo estimates")
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.data_dir, args.seed)
    except UsageError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"evaluate.py: error: {error.filename or args.run_dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
