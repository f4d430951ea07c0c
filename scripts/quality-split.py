#!/usr/bin/env python3
"""Writes the quality benchmark's split of the show's script (issue: performance).

The utterances of got_script_s1-8.csv in file order as "speaker: sentence" lines (whitespace
collapsed, speaker as given, empty sentences skipped); the first 90% of lines go to
OUT_DIR/train.txt and the last 10% to OUT_DIR/heldout.txt.

With the subtitles CSV as a third argument, OUT_DIR/subtitles.csv gets its rows of every
episode that has no line in heldout.txt (the held-out episodes, the one the cut falls in
included, are dropped whole), so that training on train.txt and subtitles.csv together sees no
held-out episode.

usage: scripts/quality-split.py SCRIPT_CSV OUT_DIR [SUBTITLES_CSV]
"""
import csv
import os
import re
import sys


def number(text: str) -> int:
    digits = re.findall(r"\d+", text or "")
    return int(digits[0]) if digits else -1


def write_subtitles(src: str, out: str, held_out: set) -> None:
    kept = dropped = 0
    with open(src, newline="", encoding="utf-8") as f, \
            open(os.path.join(out, "subtitles.csv"), "w", newline="", encoding="utf-8") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        for row in reader:
            if (number(row["season"]), number(row["episode"])) in held_out:
                dropped += 1
            else:
                writer.writerow(row)
                kept += 1
    episodes = ", ".join(f"S{s}E{e}" for s, e in sorted(held_out))
    print(f"subtitles: {kept} captions to subtitles.csv, {dropped} dropped (held-out episodes {episodes})")


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    lines, episodes = [], []
    with open(src, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            sentence = " ".join((row.get("Sentence") or "").split())
            if not sentence:
                continue
            speaker = " ".join((row.get("Name") or "").split())
            lines.append(f"{speaker}: {sentence}" if speaker else sentence)
            episodes.append((number(row.get("Season")), number(row.get("Episode"))))
    cut = len(lines) * 9 // 10
    with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:cut]) + "\n")
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    print(f"{len(lines)} lines: {cut} to train.txt, {len(lines) - cut} to heldout.txt in {out}")
    if len(sys.argv) == 4:
        write_subtitles(sys.argv[3], out, set(episodes[cut:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
