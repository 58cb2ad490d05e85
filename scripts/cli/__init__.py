"""The training commands behind scripts/train.py, one module per family of models."""
