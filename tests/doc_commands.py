#!/usr/bin/env python3
"""Runs every command the README and docs/*.md print, as printed, and checks every option they name.

A command is a line of a code block (fenced, or indented four spaces) that starts a program of
ours, one of our scripts, torchrun, curl or cmake; "$ " before it marks a transcript, whose
following lines are what it printed. Each document runs in a folder of its own, in the order it
gives, on what the documents assume a user has:

  - the show's script, as the README says to fetch it: a stand-in written here in its CSV form
    (at got_script_s1-8.csv, Game_of_Thrones_Script.csv and ~/data/Game_of_Thrones_Script.csv);
  - its quality split q/ and a model trained on it (q.pt, q.best.pt), made with the documented
    `scripts/quality-split.py got_script_s1-8.csv q` and `dracarys-train --corpus q/train.txt
    --out q.pt`.

Training is shortened, never otherwise changed: a tiny model and a few steps replace the shape,
--max-steps and --eval-every of each dracarys-train (the shape only where it is the run's to
choose). dracarys-serve gets a free port, and curl is pointed at it; a transcript's documented
error must be the server's, word for word. A command that cannot run here is listed with the
reason and the test that runs it instead (EXCUSED); any other that fails fails this test.

Every --option written after dracarys-train, -infer, -serve or -export, in code and in the text's
`inline code`, must be one that program's --help lists.

usage: tests/doc_commands.py --source DIR --bin-dir DIR --build-dir DIR --work DIR
"""
import argparse
import glob
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

PROGRAMS = ("dracarys-train", "dracarys-infer", "dracarys-serve", "dracarys-export")
STARTS = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:build/bin/dracarys-\w+|dracarys-\w+|scripts/\S+|torchrun|srun|"
                    r"curl|printf|cmake|mkdir|llama-cli|ollama)(?:\s|$)")
EXCUSED = [
    (r"^scripts/(setup|build|test)\.sh", "what CI itself runs (.ci/run)"),
    (r"^scripts/quickstart\.sh", "QuickStart.Shortened runs it"),
    (r"^(llama-cli|ollama)\b", "not ours: Export.LlamaCppRunsTheExportWithOurNumbers runs llama.cpp on an export"),
    (r"\bsrun\b", "needs a Slurm cluster: Launchers.SrunOnAOneNodeClusterEqualsTheScript starts one and runs srun"),
    (r"--nnodes 2\b", "two machines: Distributed.TorchrunStartsOneNodePerHostAndTheyEqualOneProcess runs it in two "
                      "network namespaces"),
]
# A tiny model and a short run (kShape in tests/cli_util.h); the shape only where the run chooses it.
SHAPE = {"--layers": "2", "--heads": "2", "--d-model": "64", "--d-ff": "128", "--context": "64",
         "--vocab-size": "400", "--batch-size": "8"}
SHORT = {"--max-steps": "6", "--eval-every": "3"}
SPEAKERS = ["cersei lannister", "jon snow", "arya stark", "tyrion lannister", "ned stark", "sansa stark",
            "daenerys targaryen", "jaime lannister"]
WORDS = ("winter is coming the north remembers a lannister always pays his debts you know nothing when you "
         "play the game of thrones win or die my lord lady king queen sister brother wine dragon wall night "
         "watch fire blood gold iron throne honour home sword").split()


def code_lines(text):
    """(line number, text) of each line in a fenced block or an indented one."""
    fenced = False
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or (line.startswith("    ") and not re.match(r"\s*([-*+] |\|)", line)):
            yield n, line[4:] if line.startswith("    ") and not fenced else line


def commands(path):
    """The document's commands in order: (line, command, what its transcript printed)."""
    found, joined, start = [], "", 0
    for n, line in code_lines(open(path, encoding="utf-8").read()):
        transcript = line.startswith("$ ")
        text = line[2:] if transcript else line.strip()
        if joined:
            joined += " " + text.strip()
        elif transcript or STARTS.match(text):
            joined, start = text, n
        else:
            if found and line.strip():
                found[-1][2].append(line)  # printed by the command before
            continue
        if joined.endswith("\\"):
            joined = joined[:-1].rstrip()
        elif not joined.endswith("|"):  # a pipe goes on to the next line, as a backslash does
            found.append((start, joined, []))
            joined = ""
    return found


def without_comment(command):
    return re.sub(r"\s{2,}#\s.*$", "", command).strip()


def set_option(command, option, value):
    if re.search(rf"(?<!\S){option}(?:\s+|=)\S+", command):
        return re.sub(rf"(?<!\S){option}(?:\s+|=)\S+", f"{option} {value}", command)
    return f"{command} {option} {value}"


def shortened(command):
    if not re.search(r"dracarys-train\b", command) or "--benchmark" in command:
        return command
    for option, value in SHORT.items():
        command = set_option(command, option, value)
    if not re.search(r"--init-from|--resume (?!auto)", command):
        for option, value in SHAPE.items():
            command = set_option(command, option, value)
    return command


def write_script_csv(path):
    """The show's script as its CSV has it (a stand-in: 12 episodes of made-up lines)."""
    rng = random.Random(7)
    rows = [",Release Date,Season,Episode,Episode Title,Name,Sentence"]
    n = 0
    for episode in range(1, 13):
        for _ in range(40):
            speaker = rng.choice(SPEAKERS)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            sentence = words[0].upper() + words[1:] + rng.choice([".", "?", "!"])
            if speaker == "cersei lannister" and rng.random() < 0.3:
                sentence = "When you play the game of thrones, you win or you die."
            rows.append(f'{n},2011-04-17,Season {1 + episode // 7},Episode {episode},Episode {episode},'
                        f'{speaker},"{sentence}"')
            n += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


class Runner:
    def __init__(self, args):
        self.source, self.bin_dir, self.build_dir, self.work = (
            os.path.abspath(p) for p in (args.source, args.bin_dir, args.build_dir, args.work))
        self.failures, self.ran, self.excused = [], 0, 0
        self.server, self.port = None, None
        self.env = dict(os.environ, PATH=self.bin_dir + os.pathsep + os.environ.get("PATH", ""))

    def say(self, text):
        print(text, flush=True)

    def prepare(self, folder, base=None):
        """A document's folder: the corpus, build/ and scripts/ as in a clone, HOME inside it."""
        os.makedirs(os.path.join(folder, "home", "data"), exist_ok=True)
        os.symlink(self.build_dir, os.path.join(folder, "build"))
        os.symlink(os.path.join(self.source, "scripts"), os.path.join(folder, "scripts"))
        script = os.path.join(folder, "got_script_s1-8.csv")
        write_script_csv(script)
        for alias in ("Game_of_Thrones_Script.csv", "home/data/Game_of_Thrones_Script.csv"):
            shutil.copy(script, os.path.join(folder, alias))
        if base:
            shutil.copytree(os.path.join(base, "q"), os.path.join(folder, "q"))
            for name in ("q.pt", "q.best.pt", "q.pt.probe", "q.best.pt.probe"):
                if os.path.exists(os.path.join(base, name)):
                    shutil.copy(os.path.join(base, name), os.path.join(folder, name))

    def shell(self, command, folder, stdin=None, timeout=180):
        env = dict(self.env, HOME=os.path.join(folder, "home"))
        return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=folder, env=env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def check(self, where, command, folder, printed):
        """Runs one documented command (rewritten as the module's comment says); records a failure."""
        command = without_comment(command).replace("/tmp/", os.path.join(folder, "tmp") + "/")
        for pattern, reason in EXCUSED:
            if re.search(pattern, command):
                self.excused += 1
                return self.say(f"EXCUSED {where}: {command}\n        ({reason})")
        if command.startswith("torchrun") and not shutil.which("torchrun"):
            self.excused += 1
            return self.say(f"SKIPPED {where}: torchrun is not installed (python3-torch): {command}")
        if re.search(r"dracarys-serve\b", command):
            return self.start_server(where, command, folder)
        command = shortened(command)
        if command.startswith("torchrun"):
            command = re.sub(r"^torchrun( --master_port \S+)?", "torchrun", command)
            command = re.sub(r" --master_port \S+", "", command)
            command = command.replace("torchrun", f"torchrun --master_port {free_port()}", 1)
        expect_error = None
        if command.startswith("curl"):
            command = self.aimed(command)
            expect_error = documented_error(printed)
        started = time.time()
        try:
            r = self.shell(command, folder, stdin="")
        except subprocess.TimeoutExpired:
            return self.fail(where, command, "timed out")
        self.ran += 1
        if expect_error is not None:
            got = documented_error(r.stdout.splitlines())
            if got != expect_error:
                return self.fail(where, command, f"the server said {got!r}, the document {expect_error!r}")
        elif r.returncode != 0:
            return self.fail(where, command, f"exit {r.returncode}:\n{tail(r.stderr or r.stdout)}")
        self.say(f"ok      {where} ({time.time() - started:.1f} s): {command}")

    def aimed(self, command):
        if not self.port:
            return command
        return command.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}").replace("curl ", "curl --max-time 60 ", 1)

    def start_server(self, where, command, folder):
        command = set_option(command, "--port", "0")
        env = dict(self.env, HOME=os.path.join(folder, "home"))
        self.server = subprocess.Popen(["bash", "-c", "exec " + command], cwd=folder, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=open(os.path.join(folder, "serve.log"), "w"))
        line = self.server.stdout.readline()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.server.wait(timeout=30)
            self.server = None
            return self.fail(where, command, "the server did not start: " + tail(open(folder + "/serve.log").read()))
        self.port = int(found.group(1))
        self.ran += 1
        self.say(f"ok      {where}: {command} (listening on port {self.port})")

    def stop_server(self, where):
        if not self.server:
            return
        self.server.send_signal(signal.SIGTERM)
        code = self.server.wait(timeout=60)
        if code != 0:
            self.fail(where, "dracarys-serve", f"exit {code} on SIGTERM")
        self.server, self.port = None, None

    def fail(self, where, command, why):
        self.failures.append(where)
        self.say(f"FAILED  {where}: {command}\n        {why}")

    def run_document(self, path, base):
        name = os.path.relpath(path, self.source)
        folder = os.path.join(self.work, name.replace("/", "_"))
        self.prepare(folder, base)
        for line, command, printed in commands(path):
            self.check(f"{name}:{line}", command, folder, printed)
        self.stop_server(name)

    def check_options(self):
        """Every --option after one of our programs, in code or inline, is in its --help."""
        known = {}
        for program in PROGRAMS:
            out = subprocess.run([os.path.join(self.bin_dir, program), "--help"], capture_output=True, text=True).stdout
            known[program] = set(re.findall(r"--[a-z0-9][a-z0-9-]*", out))
        checked = 0
        for path in documents(self.source):
            text = open(path, encoding="utf-8").read()
            spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", text)]
            spans += [c for _, c, _ in commands(path)]
            for span in spans:
                for program, args in re.findall(r"(dracarys-(?:train|infer|serve|export))\b([^`|;&]*)", span):
                    for option in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", args):
                        checked += 1
                        if option not in known[program]:
                            self.fail(os.path.relpath(path, self.source), f"{program} {option}",
                                      f"{program} has no option {option}")
        self.say(f"options: {checked} named after our programs in the README and docs/, checked against --help")


def documents(source):
    return [os.path.join(source, "README.md")] + sorted(glob.glob(os.path.join(source, "docs", "*.md")))


def documented_error(lines):
    """The message of a JSON error among `lines`, else None."""
    for line in lines:
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and "error" in answer:
            return answer["error"].get("message")
    return None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(text, lines=8):
    return "\n".join("        " + line for line in text.strip().splitlines()[-lines:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for option in ("--source", "--bin-dir", "--build-dir", "--work"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    runner = Runner(args)
    runner.check_options()
    # What the documents assume: the script's quality split and a model trained on it.
    base = os.path.join(runner.work, "assumed")
    runner.prepare(base)
    for command in ("scripts/quality-split.py got_script_s1-8.csv q", "dracarys-train --corpus q/train.txt --out q.pt"):
        runner.check("(assumed)", command, base, [])
    if runner.failures:
        sys.exit("the documents' starting point could not be made")
    for path in documents(runner.source):
        runner.run_document(path, base)
    runner.say(f"{runner.ran} documented commands ran, {runner.excused} excused, {len(runner.failures)} failed")
    sys.exit(1 if runner.failures else 0)


if __name__ == "__main__":
    main()
