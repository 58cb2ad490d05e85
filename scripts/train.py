#!/usr/bin/env python
"""Train any model of the project:  python scripts/train.py MODEL [flags]   (MODEL --help for its flags)

Every run writes into --out DIR (default runs/<model>-<time>): metrics.json, samples.npz or the
RL metrics, checkpoint.npz (Ctrl-C saves it; --resume DIR continues exactly) and PNG figures.
"""
import argparse
import importlib
import os
import sys

# The RL agents' networks are tiny: BLAS threads only add overhead there, and with one thread the
# float results (so the whole training run) do not depend on the machine's core count. This must be
# set before NumPy is imported; an explicit OPENBLAS_NUM_THREADS from the user wins.
if len(sys.argv) > 1 and sys.argv[1] in ("dqn", "reinforce", "es"):
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # scripts/cli
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, if not installed

from cli.common import UsageError  # noqa: E402

# subcommand -> module in scripts/cli that registers it
COMMANDS = {
    "vae": "cli.vae", "cvae": "cli.vae",
    "dcgan": "cli.dcgan",
    "flow": "cli.flow",
    "conv-vae": "cli.conv_vae",
    "dqn": "cli.rl", "reinforce": "cli.rl", "es": "cli.rl",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for module_name in dict.fromkeys(COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:       # that family has not landed yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UsageError as error:
        print(f"train.py {args.model}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
