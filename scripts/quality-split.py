#!/usr/bin/env python3
"""Writes the quality benchmark's split of the show's script (issue: performance).

The utterances of got_script_s1-8.csv in file order as "speaker: sentence" lines (whitespace
collapsed, speaker as given, empty sentences skipped); the first 90% of lines go to
OUT_DIR/train.txt and the last 10% to OUT_DIR/heldout.txt.

usage: scripts/quality-split.py CSV OUT_DIR
"""
import csv
import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    lines = []
    with open(src, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            sentence = " ".join((row.get("Sentence") or "").split())
            if not sentence:
                continue
            speaker = " ".join((row.get("Name") or "").split())
            lines.append(f"{speaker}: {sentence}" if speaker else sentence)
    cut = len(lines) * 9 // 10
    with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:cut]) + "\n")
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    print(f"{len(lines)} lines: {cut} to train.txt, {len(lines) - cut} to heldout.txt in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
