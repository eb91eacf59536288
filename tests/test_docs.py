"""The docs as a newcomer meets them: the site builds with --strict (a broken link or anchor fails), the README
stays short, and what the README and the pages tell people to run is checked against the real thing: every
`payg` command in a shell block parses with the CLI's own parser, every `make` target exists in the Makefile,
and every TOML block loads with the real configuration loader."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from payg.adapters.config import hub as hub_config
from payg.adapters.config import load
from payg.adapters.config.profiles import load_profile
from payg.cli.parser import parse_args
from payg.errors import ConfigError
from tests.support import ROOT

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))  # the symlinked ARCHITECTURE.md, deploy/README.md, CHANGELOG.md too
SHELL = {"sh", "console", "bash", "shell"}
COMPLETE = "a complete configuration"  # a TOML block whose first line says this is loaded on its own
# A block that is neither complete nor a meter profile is a fragment: it is loaded in a configuration that
# has, for each of these sections it lacks, the smallest one the loader takes.
BASE = {
    "controller": '[controller]\ndata_dir = "var"\n',
    "ledger": '[ledger]\nbackend = "mock"\n',
    "sockets": ('[[sockets]]\nid = "kitchen"\nmeter = { kind = "simulated", load_w = 800 }\n'
                'relay = { kind = "simulated" }\n'),
}
# What a placeholder in a command stands for when the command is parsed.
SAMPLES = {"<socket>": "kitchen", "<id>": "kitchen", "<file>": "config/default.toml"}
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the opening fence
    lang: str
    text: str


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, indented ones (inside a list) included."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        found.append(Block(f"{path.relative_to(ROOT)}:{i + 1}", lang.lower(), "\n".join(body)))
        i = j + 1
    return found


def commands(block: Block) -> list[list[str]]:
    """The simple commands of a shell block, as words: continuation lines joined, comments and a console's
    output left out, each `$(...)` its own command, split at pipes and `&&`, `;`."""
    text = re.sub(r"\\\n", " ", block.text)
    lines = text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    found = []
    for line in lines:
        inner = re.findall(r"\$\(([^()]*)\)", line)
        line = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", line)
        for part in (line, *inner):
            lexer = shlex.shlex(part, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in SEPARATORS:
                    if words:
                        found.append(words)
                    words = []
                else:
                    words.append(token)
    return found


def program(words: list[str]) -> tuple[str, list[str]]:
    """The program a command runs and its arguments, past variable assignments and sudo's options."""
    words = list(words)
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words.pop(0)
    if words and words[0] == "sudo":
        words.pop(0)
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in ("-u", "-g") else words[1:]
    if not words:
        return "", []
    name = Path(words[0]).name
    if re.fullmatch(r"python3?(\.\d+)?", name) and words[1:2] == ["app.py"]:
        return "payg", words[2:]
    return name, words[1:]


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([^\s#:=][^:=]*):(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def substituted(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        for placeholder in re.findall(r"<[^<>]+>", arg):
            if placeholder.lower() not in SAMPLES:
                raise ValueError(f"no sample value for the placeholder {placeholder} (add one to SAMPLES)")
            arg = arg.replace(placeholder, SAMPLES[placeholder.lower()])
        out.append(arg)
    return out


def check_shell(block: Block, targets: set[str]) -> tuple[list[str], list[str]]:
    """(what was checked, what is wrong) for one shell block."""
    checked, wrong = [], []
    for words in commands(block):
        name, args = program(words)
        shown = " ".join(words)
        if name == "payg":
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    parse_args(substituted(args))
            except (SystemExit, ValueError) as e:
                wrong.append(f"{block.where}: `{shown}` does not parse: {err.getvalue().strip() or e}")
            checked.append(shown)
        elif name == "make":
            rest = list(args)
            while rest and rest[0].startswith("-"):
                rest = rest[2:] if rest[0] in ("-C", "-f", "-j") else rest[1:]
            for target in (w for w in rest if "=" not in w):
                if target not in targets:
                    wrong.append(f"{block.where}: `{shown}`: the Makefile has no target {target!r}")
            checked.append(shown)
    return checked, wrong


def check_toml(block: Block, tmp: Path) -> str | None:
    """What is wrong with one TOML block, or None: a complete configuration, a meter profile, a fragment
    of a controller's configuration, or a fragment of a hub's (its [hub] table, the keys it must have added)."""
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as e:
        return f"{block.where}: not TOML: {e}"
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    file = tmp / "block.toml"
    try:
        if "fields" in data and "function_code" in data:
            file.write_text(block.text)
            load_profile(str(file), [])
        elif "hub" in data:
            hub = data["hub"]
            hub.setdefault("data_dir", str(tmp / "hub"))
            if not any(k.startswith("landlord_password_hash") for k in hub):
                hub["landlord_password_hash_env"] = "PAYG_DOCS_HUB_HASH"
            data.setdefault("mqtt", {"username": "hub", "password_env": "PAYG_DOCS_HUB_MQTT"})
            hub_config.parse(data, block.where)
        else:
            text = block.text if COMPLETE in first else \
                block.text + "\n" + "".join(chunk for key, chunk in BASE.items() if key not in data)
            file.write_text(text)
            load(file, profile_dirs=(ROOT / "config" / "meters",))
    except ConfigError as e:
        return f"{block.where}: refused by the loader: {e}"
    return None


def all_blocks() -> list[Block]:
    return [b for path in (README, *PAGES) for b in blocks(path)]


def test_the_site_builds_with_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
                          "--config-file", str(ROOT / "mkdocs.yml")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    for page in ("index.html", "configuration/index.html", "development/architecture/index.html",
                 "operations/raspberry-pi/index.html", "changelog/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_the_readme_is_short_and_its_links_lead_somewhere():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)]
    assert "docs/configuration.md" in links and "docs/getting-started.md" in links
    assert [t for t in links if not (ROOT / t.split("#")[0]).exists()] == []


def test_every_command_in_the_readme_and_the_docs_parses():
    targets = makefile_targets()
    checked, wrong = [], []
    for block in all_blocks():
        if block.lang in SHELL:
            c, w = check_shell(block, targets)
            checked += c
            wrong += w
    assert wrong == []
    # the extraction found what a newcomer runs first
    assert {"make run", "make test", ".venv/bin/payg deposit --socket kitchen --amount 200",
            ".venv/bin/payg password"} <= set(checked), checked
    assert len(checked) >= 20


def test_every_toml_block_in_the_readme_and_the_docs_loads(tmp_path):
    tomls = [b for b in all_blocks() if b.lang == "toml"]
    assert [w for w in (check_toml(b, tmp_path) for b in tomls) if w] == []
    assert any(COMPLETE in b.text.splitlines()[0] for b in tomls), "no complete configuration is shown"
    assert len(tomls) >= 5


@pytest.mark.parametrize("text", [
    "payg frobnicate --socket kitchen",                    # no such command
    ".venv/bin/payg deposit --socket kitchen",             # --amount is required
    "PAYG_X=1 payg meters scan --port /dev/ttyUSB0 --first 0",  # an address is 1-247
    "echo $(payg status --colour)",                        # inside a substitution
    "make run && make deploy",                             # no such target
    "payg address --socket <flat>",                        # a placeholder with no sample
])
def test_the_command_check_rejects_a_planted_bad_command(text):
    checked, wrong = check_shell(Block("planted.md:1", "sh", text), makefile_targets())
    assert checked and len(wrong) == 1, (checked, wrong)


def test_the_command_check_reads_prompts_continuations_and_comments():
    block = Block("planted.md:1", "console", "$ payg journal \\\n    --socket kitchen --csv   # all of it\n"
                  "kitchen,deposit,200\n$ sudo -u payg payg status | head -2")
    checked, wrong = check_shell(block, makefile_targets())
    assert checked == ["payg journal --socket kitchen --csv", "sudo -u payg payg status"] and wrong == []


@pytest.mark.parametrize("text", [
    "[web]\nport = 0\n",                                   # a fragment with a bad value
    "[[sockets]]\nid = \"a\"\nmeter = { kind = \"simulated\", load_w = 8 }\nrelay = { kind = \"gpio\" }\n",
    f"# {COMPLETE}\n[controller]\ndata_dir = \"var\"\n",   # complete, so nothing is added: no [ledger]
    "model = \"x\"\nfunction_code = 4\nstart = 0\ncount = 1\n[fields.energy_wh]\noffset = 9\nencoding = \"u16\"\n",
    "[hub]\nmqtt_workers = 99\n",                          # a hub's fragment with a bad value
])
def test_the_toml_check_rejects_a_planted_bad_block(text, tmp_path):
    assert check_toml(Block("planted.md:1", "toml", text), tmp_path) is not None
