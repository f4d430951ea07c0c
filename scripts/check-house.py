#!/usr/bin/env python3
"""The house rules the compiler cannot see, checked on every tracked source file.

  Layers: a folder includes only its own headers and those of the floors below it.
      floor 1  model/ (the transformer: tokens, never text, files or executables), data/
      floor 2  checkpoint/, cli/
      floor 3  engine/
      floor 4  train/, infer/, serve/, export/ (the executables: never each other)
  Length: no function longer than 80 lines.

scripts/lint.sh runs it; it prints each breach and exits 1 when there is one.
"""
import re
import subprocess
import sys

FLOORS = {"model": 1, "data": 1, "checkpoint": 2, "cli": 2, "engine": 3,
          "train": 4, "infer": 4, "serve": 4, "export": 4}
MAX_LINES = 80
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"/]+)/')


def layer_breaches(path, text):
    own = path.split("/")[0]
    for number, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m or m.group(1) not in FLOORS or m.group(1) == own:
            continue
        if FLOORS[m.group(1)] >= FLOORS[own]:
            yield f"{path}:{number}: {own}/ (floor {FLOORS[own]}) includes {m.group(1)}/ (floor {FLOORS[m.group(1)]})"


def code_only(text):
    """The text with comments, strings and character literals blanked (line breaks kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def long_functions(path, text):
    """Function bodies: a brace opened at namespace or class level after a parameter list."""
    code = code_only(text)
    stack = []  # for each open brace: (kind, line where its header began)
    header_start, header = None, ""
    line = 1
    for c in code:
        if c == "\n":
            line += 1
        if c == "{":
            in_function = any(kind == "function" for kind, _ in stack)
            h = header.strip()
            is_function = (not in_function and ")" in h and not re.search(r"\b(namespace|class|struct|enum|union)\b", h)
                           and not h.endswith("=") and not h.startswith("#"))
            stack.append(("function" if is_function else "block", header_start or line))
            header, header_start = "", None
        elif c == "}":
            if stack:
                kind, start = stack.pop()
                if kind == "function" and not any(k == "function" for k, _ in stack) and line - start + 1 > MAX_LINES:
                    yield f"{path}:{start}: a function of {line - start + 1} lines (at most {MAX_LINES})"
            header, header_start = "", None
        elif c == ";":
            header, header_start = "", None
        else:
            if header_start is None and not c.isspace():
                header_start = line
            if c != "\n" or header:
                header += c
            if c == "\n" and header.lstrip().startswith("#"):
                header, header_start = "", None
    return


def main():
    files = subprocess.run(["git", "ls-files", "*.h", "*.cpp"], capture_output=True, text=True,
                           check=True).stdout.split()
    breaches = []
    for path in files:
        if path.split("/")[0] not in FLOORS:
            continue
        text = open(path, encoding="utf-8").read()
        breaches += layer_breaches(path, text)
        breaches += long_functions(path, text)
    for b in breaches:
        print(b)
    print(f"house: {len(files)} files; {len(breaches)} breach(es) of the layers or the {MAX_LINES}-line limit")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
