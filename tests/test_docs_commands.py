"""Every command the docs show still runs: scripts exist, options exist, config keys exist.

Reads README.md, datasets/README.md and docs/*.md; takes the shell commands out of the fenced code
blocks and the inline code spans (lines joined at a trailing ``\\``) that run ``python train.py``,
``python test.py``, ``python scripts/<x>.py``, ``python -m cans.<module>``, ``sh train.sh``,
``sh test.sh``, ``bash scripts/<x>.sh`` or ``torchrun ... train.py``, and checks each against the
script's own argument parser (``build_parser()`` of its command module in cans/cli, built without
running it):

* the script (or module) exists;
* every ``--option`` is one the parser defines (spelt out in full: no abbreviations);
* a value given to an option with choices is one of them (``[--camera Sony|Fuji]``: each);
* a command without placeholders (``...``, ``[optional]``, ``CONFIG``) parses as a whole;
* every ``--set key=value`` names a key of the config schema, and the value fits its type.

``sh train.sh`` / ``sh test.sh`` are read as the shell scripts forward them (config, then the
checkpoint for test.sh, then the rest) to train.py / test.py. Besides the commands: every dotted
config key in inline code (``train.fast``, ``data.skip_bad_files: true``) is a key of the schema
(and its value, when one is given, fits), and every ``configs/...yaml`` and repository script the
docs name exists. No model runs, no training: a few seconds.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import REPO

from cans.config import SCHEMA, ConfigError, Field, load_config, parse_override

DOCS = ["README.md", "datasets/README.md"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))

# the top-level config sections a dotted name in the docs may start with
SECTIONS = tuple(k for k, v in SCHEMA.items() if isinstance(v, dict))
FILE_SUFFIXES = {"py", "sh", "log", "md", "json", "yaml", "yml", "csv", "tsv", "txt", "pth", "png", "npy", "ARW"}
SPLITS = ("train", "valid", "test")


# ------------------------------------------------------------------------------------------------
# Reading the Markdown
# ------------------------------------------------------------------------------------------------

@dataclass
class Snippet:
    """A piece of code in a Markdown file: a fenced block's text or an inline code span."""
    where: str  # "file:line"
    text: str
    fenced: bool


_FENCE = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def snippets(text: str, name: str) -> List[Snippet]:
    """The fenced blocks and inline code spans of a Markdown text, with their line numbers."""
    out: List[Snippet] = []

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    blanked = list(text)
    for m in _FENCE.finditer(text):
        out.append(Snippet(f"{name}:{line_of(m.start(2))}", m.group(2), True))
        for i in range(m.start(), m.end()):  # keep the line count, drop the block for the inline search
            if blanked[i] != "\n":
                blanked[i] = " "
    rest = "".join(blanked)
    for m in _INLINE.finditer(rest):
        out.append(Snippet(f"{name}:{line_of(m.start(1))}", m.group(1).replace("\\|", "|"), False))
    return out


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

@dataclass
class Command:
    where: str
    program: str  # "train.py", "scripts/infer.py", "cans.cli.profile", "train.sh", "scripts/gpu_check.sh"
    args: List[str]
    text: str
    fragment: bool = False  # `test.py --all-frames` in prose: options only, not a whole command line


_STARTS = re.compile(
    r"(?:^|(?<=[\s;&|(]))(?:"
    r"python3?\s+-m\s+(?P<module>cans(?:\.\w+)+)"
    r"|python3?\s+(?P<py>[\w./-]+\.py)"
    r"|(?:sh|bash)\s+(?P<sh>[\w./-]+\.sh)"
    r"|torchrun\s[^;&|]*?(?<=\s)(?P<torchrun>(?:train|test)\.py)"
    r")(?=\s|$)")
# an inline span that is a bare script with options: `test.py --all-frames`, `scripts/infer.py --tile auto`
_BARE = re.compile(r"^\s*(?P<py>(?:scripts/)?\w+\.py)\s+(?=-)")
_ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&"}


def _tokens(text: str) -> List[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose: split at blanks
        return text.split("#", 1)[0].split()


def commands_in(snippet: Snippet) -> List[Command]:
    """The project's commands in one snippet (fenced: one per line after joining ``\\`` lines)."""
    name, first = snippet.where.rsplit(":", 1)
    if snippet.fenced:  # (line number, the line with its `\` continuations joined)
        lines, start, pending = [], None, ""
        for i, raw in enumerate(snippet.text.splitlines()):
            start = i if start is None else start
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            lines.append((int(first) + start, pending + raw))
            start, pending = None, ""
    else:
        lines = [(int(first), " ".join(snippet.text.replace("\\\n", " ").split()))]
    found = []
    for lineno, line in lines:
        matches = list(_STARTS.finditer(line))
        if not matches and not snippet.fenced:
            bare = _BARE.match(line)
            matches = [bare] if bare else []
        for j, m in enumerate(matches):
            end = matches[j + 1].start() if j + 1 < len(matches) else len(line)  # up to the next command
            kind = next(k for k in ("module", "py", "sh", "torchrun") if m.groupdict().get(k))
            program = m.group(kind)
            if kind == "py" and not (REPO / program).exists() and (REPO / "scripts" / program).exists():
                program = "scripts/" + program  # `infer.py --tile 512` in prose
            args = []
            for tok in _tokens(line[m.end():end]):
                if tok in _ENDS:
                    break
                args.append(tok)
            found.append(Command(f"{name}:{lineno}", program, args, line.strip(), fragment=m.re is _BARE))
    return found


def all_commands() -> List[Command]:
    out = []
    for name in DOCS:
        for snip in snippets((REPO / name).read_text(encoding="utf-8"), name):
            out.extend(commands_in(snip))
    return out


# ------------------------------------------------------------------------------------------------
# Parsers
# ------------------------------------------------------------------------------------------------

_PARSERS: Dict[str, Optional[argparse.ArgumentParser]] = {}
SHELL_FORWARDS = {"train.sh": ("train.py", 1), "test.sh": ("test.py", 2)}  # script, positionals it takes
SHELL_WITHOUT_OPTIONS = {"scripts/gpu_check.sh"}  # takes OUTDIR and environment variables only


_MODULES: Dict[str, Any] = {}


#: modules the docs may run with ``python -m`` whose command line is another module's
COMMAND_ALIASES: Dict[str, str] = {}


def command_module(program: str) -> str:
    """The module that parses ``program``'s command line: ``train.py`` / ``scripts/X.py`` (shims) ->
    ``cans.cli.train`` / ``cans.cli.X``; ``python -m`` modules as they are (or their alias)."""
    if program.endswith(".py"):
        return "cans.cli." + program.rsplit("/", 1)[-1][:-3]
    return COMMAND_ALIASES.get(program, program)


def parser_of(program: str) -> argparse.ArgumentParser:
    """The argument parser of a Python entry point, built by its command module's ``build_parser()``."""
    if program not in _PARSERS:
        module = importlib.import_module(command_module(program))
        assert hasattr(module, "build_parser"), f"{program} has no build_parser(); the docs check needs one"
        _PARSERS[program] = module.build_parser()
        _MODULES[program] = module
    return _PARSERS[program]


def parse_like(program: str, args: List[str]) -> None:
    """Parse ``args`` as the program does: its ``parse_args(argv)`` when it has one (the checks after
    argparse, e.g. infer.py's inputs written after ``--set``), else its parser."""
    parser = parser_of(program)
    parse = getattr(_MODULES[program], "parse_args", None)
    parse(args) if callable(parse) else parser.parse_args(args)


def _forwarded(program: str, args: List[str]) -> Tuple[str, List[str]]:
    """What train.sh / test.sh run: ``-c CONFIG [--checkpoint CKPT] rest`` for train.py / test.py."""
    target, positional = SHELL_FORWARDS[program]
    args = list(args)
    out = []
    for flag in ("-c", "--checkpoint")[:positional]:
        if args and not args[0].startswith("-"):
            out += [flag, args.pop(0)]
    return target, out + args


# ------------------------------------------------------------------------------------------------
# Config keys
# ------------------------------------------------------------------------------------------------

def schema_entries(key: str):
    """The schema entries a dotted name stands for (``*`` any section key, ``<split>`` any data split)."""
    nodes = [SCHEMA]
    for part in key.split("."):
        nxt = []
        for node in nodes:
            if isinstance(node, Field) and node.kind == "mapping" or node == "free-form":
                nxt.append("free-form")  # a key inside a free-form mapping (data.options.*): any name
                continue
            if not isinstance(node, dict):
                continue
            if part == "*" or (part.startswith("<") and part.endswith(">")):
                names = SPLITS if part == "<split>" else list(node)
                nxt.extend(node[n] for n in names if n in node)
            elif part in node:
                nxt.append(node[part])
        nodes = nxt
    return nodes


def is_placeholder(token: str) -> bool:
    """``...``, ``<camera>``, ``[optional]`` or an upper-case name (CONFIG, PATH, N, H)."""
    t = token.strip("[]")
    return (not t or "..." in t or "…" in t or "<" in t or re.fullmatch(r"[A-Z][A-Z0-9_:]*", t) is not None
            or t.startswith("$"))


def config_key_problem(key: str, value: Optional[str], where: str) -> Optional[str]:
    """Why ``key`` (``value``, when given and not a placeholder) is not a valid config setting."""
    entries = schema_entries(key)
    if not entries:
        return f"{where}: config key {key} is not in the config schema (cans/config.py)"
    if value is None or is_placeholder(value) or "|" in value:
        return None
    try:
        _, parsed = parse_override(f"{key}={value}")   # the value as --set parses it
    except ConfigError as exc:
        return f"{where}: {exc}"
    for entry in entries:
        if isinstance(entry, Field) and entry.kind != "mapping":
            try:
                entry.check(parsed, key)
            except ConfigError as exc:
                return f"{where}: {exc}"
    return None


# ------------------------------------------------------------------------------------------------
# The checks of one command
# ------------------------------------------------------------------------------------------------

def _option_values(parser: argparse.ArgumentParser, args: List[str]):
    """(option, action, its value tokens) for each option token of ``args`` (``--opt=v`` too)."""
    actions = parser._option_string_actions  # the parser's option table: exact names only
    for i, tok in enumerate(args):
        tok = tok.strip("[]")
        if not tok.startswith("-") or re.fullmatch(r"-\d[\d.e-]*", tok):
            continue
        name, eq, inline = tok.partition("=")
        action = actions.get(name)
        if eq:
            values = [inline]
        else:
            values = []
            for v in args[i + 1:]:
                if v.lstrip("[").startswith("-") and not re.fullmatch(r"-\d[\d.e-]*", v):
                    break
                values.append(v)
                if v.endswith("]") or v.startswith("["):  # [--opt value]: the group ends
                    break
            n = action.nargs if action is not None else None
            if n is None:
                values = values[:1]
            elif isinstance(n, int):
                values = values[:n]
            elif n == "?":
                values = values[:1]
        yield name, action, values


def command_problems(cmd: Command) -> List[str]:
    """Why the command would not run as the docs show it (empty: it would)."""
    where = f"{cmd.where}: `{cmd.text}`"
    program, args = cmd.program, cmd.args
    if program.startswith("cans."):
        if importlib.util.find_spec(program) is None:
            return [f"{where}: there is no module {program}"]
    elif not (REPO / program).is_file():
        return [f"{where}: there is no file {program} in the repository"]
    if program in SHELL_WITHOUT_OPTIONS:
        return [f"{where}: {program} takes no option {a}" for a in args if a.strip("[]").startswith("-")]
    if program in SHELL_FORWARDS:
        program, args = _forwarded(program, args)
    elif program.endswith(".sh"):
        return [f"{where}: {program} is not a script this test knows how to check; add it to tests/test_docs_commands.py"]
    parser = parser_of(program)
    problems = []
    for name, action, values in _option_values(parser, args):
        if action is None:
            problems.append(f"{where}: {program} has no option {name}")
            continue
        if action.choices is not None:
            for v in values:
                v = v.strip("[]")
                for alt in ([] if is_placeholder(v) else v.split("|")):
                    if alt not in [str(c) for c in action.choices]:
                        problems.append(f"{where}: {name} {alt}: not one of {list(action.choices)}")
        if action.dest == "set":
            for v in values:
                v = v.strip("[]")
                key, eq, value = v.partition("=")
                if is_placeholder(key) or key == "key":  # `--set key=value ...`: the syntax, not a key
                    continue
                if program == "scripts/infer.py" and not _MODULES[program]._OVERRIDE.match(v):  # an input after --set
                    continue
                problem = config_key_problem(key, value if eq else None, where)
                if problem:
                    problems.append(problem)
    for i, a in enumerate(args):  # configs the command names
        if re.fullmatch(r"[\w./-]+\.ya?ml", a) and (a.startswith("configs/") or (i and args[i - 1] in ("-c", "--config"))):
            if not (REPO / a).is_file() and not a.startswith(("../", "/")):  # outside: the user's own files
                problems.append(f"{where}: there is no config {a}")
    if not problems and not cmd.fragment and not any(is_placeholder(a) or "[" in a or "]" in a for a in args):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parse_like(program, args)
        except SystemExit:
            last = err.getvalue().strip().splitlines()
            problems.append(f"{where}: {program} rejects it: {last[-1] if last else 'argument error'}")
    return problems


# ------------------------------------------------------------------------------------------------
# Options named alone in prose: `--tile auto`, `--compare-paper`
# ------------------------------------------------------------------------------------------------

ENTRY_POINTS = ["train.py", "test.py", "cans.cli.profile"] + sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "scripts").glob("*.py"))


def option_problems(snippet: Snippet) -> List[str]:
    """An inline span that starts with an option names no script: each of its ``--options`` must
    be one that some entry point defines, and a value with choices one that such a parser accepts."""
    if snippet.fenced or not snippet.text.lstrip().startswith("--"):
        return []
    parsers = [parser_of(p) for p in ENTRY_POINTS]
    problems = []
    args = _tokens(snippet.text)
    for name, _, values in _option_values(parsers[0], args):
        actions = [p._option_string_actions[name] for p in parsers if name in p._option_string_actions]
        if not actions:
            problems.append(f"{snippet.where}: `{snippet.text}`: no script of the project has an option {name}")
            continue
        if all(a.choices is not None for a in actions):
            accepted = {str(c) for a in actions for c in a.choices}
            for v in values:
                for alt in ([] if is_placeholder(v) else v.strip("[]").split("|")):
                    if alt not in accepted:
                        problems.append(f"{snippet.where}: `{snippet.text}`: {name} {alt}: not one of {sorted(accepted)}")
    return problems


# ------------------------------------------------------------------------------------------------
# Dotted config keys and files named anywhere in the docs
# ------------------------------------------------------------------------------------------------

_KEY = re.compile(r"(?<![\w./<*-])((?:%s)(?:\.(?:[A-Za-z_]\w*|\*|<\w+>))+)(?![\w/])" % "|".join(SECTIONS))


def key_problems(snippet: Snippet) -> List[str]:
    """Dotted config names in an inline span (``train.fast``, ``train.amp=bf16``,
    ``data.skip_bad_files: true``) that the schema lacks, or whose value does not fit."""
    problems = []
    # a quoted error for a misspelt key (`unknown config key train.base_rl; did you mean train.base_lr?`)
    text = re.sub(r"unknown config key \S+", "unknown config key", snippet.text)
    whole = re.fullmatch(r"\s*(\S+)\s*(?:[:=]\s*(.+?))?\s*", text)
    for m in _KEY.finditer(text):
        key = m.group(1)
        if key.rsplit(".", 1)[-1] in FILE_SUFFIXES:
            continue  # train.py, test.sh, train.log
        value = None
        if whole and whole.group(1).rstrip(":=") == key and whole.group(2) is not None:
            value = whole.group(2)
            if " " in value.strip() and not value.strip().startswith("["):
                value = None  # prose after the key: `data.train.patch_size: 64 does not fit ...`
        else:
            after = re.match(r"=(\S+)", text[m.end():])  # key=value inside a longer span
            value = after.group(1) if after else None
        problem = config_key_problem(key, value, f"{snippet.where}: `{text.strip()}`")
        if problem:
            problems.append(problem)
    return problems


_REPO_FILE = re.compile(r"(?<![\w./-])((?:configs|scripts|cans|tests)/[\w./-]*\w\.(?:ya?ml|py|sh))(?![\w/])")


def missing_files(text: str, name: str) -> List[str]:
    """configs/...yaml, scripts/..., cans/... and tests/... paths the text names that do not exist."""
    out = []
    for m in _REPO_FILE.finditer(text):
        if not (REPO / m.group(1)).is_file():
            out.append(f"{name}:{text.count(chr(10), 0, m.start()) + 1}: names {m.group(1)}, which does not exist")
    return out


# ------------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------------

def test_the_docs_show_commands():
    """The extraction finds the commands (an empty list would pass every check below)."""
    cmds = all_commands()
    programs = {c.program for c in cmds}
    for must in ("train.sh", "test.sh", "test.py", "scripts/infer.py", "scripts/prepare_sid.py",
                 "scripts/prepare_pairs.py", "scripts/benchmark.py", "scripts/gpu_check.sh", "cans.cli.profile"):
        assert must in programs, f"no `{must}` command found in the docs; found {sorted(programs)}"
    assert len(cmds) >= 40, len(cmds)


@pytest.mark.parametrize("doc", DOCS)
def test_commands_run_as_shown(doc):
    problems = []
    for snip in snippets((REPO / doc).read_text(encoding="utf-8"), doc):
        for cmd in commands_in(snip):
            problems += command_problems(cmd)
    assert not problems, "\n".join(problems)


def test_every_entry_point_builds_its_parser():
    for program in ENTRY_POINTS:
        assert isinstance(parser_of(program), argparse.ArgumentParser), program


@pytest.mark.parametrize("doc", DOCS)
def test_options_named_in_prose_exist(doc):
    problems = []
    for snip in snippets((REPO / doc).read_text(encoding="utf-8"), doc):
        problems += option_problems(snip)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS)
def test_config_keys_exist(doc):
    problems = []
    for snip in snippets((REPO / doc).read_text(encoding="utf-8"), doc):
        if not snip.fenced:
            problems += key_problems(snip)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS)
def test_named_files_exist(doc):
    problems = missing_files((REPO / doc).read_text(encoding="utf-8"), doc)
    assert not problems, "\n".join(problems)


def _docstring_snippet(program: str) -> Snippet:
    """The entry point's module docstring (what ``--help`` shows), or the header comment of a shell
    script, read as one shell block."""
    if program.endswith(".sh"):
        lines = (REPO / program).read_text(encoding="utf-8").splitlines()
        return Snippet(f"{program}:1", "\n".join(re.sub(r"^#!.*|^#\s?", "", l) if l.startswith("#") else ""
                                                  for l in lines), True)
    path = REPO / (program if program.endswith(".py") else program.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree, clean=False) or ""
    first = tree.body[0].lineno if doc else 1
    return Snippet(f"{path.relative_to(REPO).as_posix()}:{first}", doc, True)


@pytest.mark.parametrize("program", ENTRY_POINTS + ["train.sh", "test.sh"])
def test_help_examples_run_as_shown(program):
    """The example commands in each entry point's docstring (its --help) and in the header of
    train.sh / test.sh pass the same checks."""
    problems = []
    for cmd in commands_in(_docstring_snippet(program)):
        problems += command_problems(cmd)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# The checks themselves can fail: stale lines, as a refactor would leave them
# ------------------------------------------------------------------------------------------------

def _problems_of_markdown(md: str) -> List[str]:
    out = []
    for snip in snippets(md, "scratch.md"):
        for cmd in commands_in(snip):
            out += command_problems(cmd)
        if not snip.fenced:
            out += key_problems(snip) + option_problems(snip)
    return out + missing_files(md, "scratch.md")


GOOD = """
```sh
sh train.sh configs/demo.yaml --set train.epochs=2 data.train.patch_size=256
python scripts/infer.py -c configs/demo.yaml --checkpoint runs/x.pth \\
    --ratio auto --tile 512 photo.ARW
```
Then `sh test.sh configs/demo.yaml runs/x.pth --compare-paper`, `train.fast`, `test.amp: bf16`,
`python -m cans.cli.profile -c configs/CANS_Plus/Sony.yaml [--size H W]` and `bash scripts/gpu_check.sh OUT`;
in prose `--tile auto`, `--amp off|bf16`.
"""


def test_a_correct_page_passes():
    assert _problems_of_markdown(GOOD) == []
    assert len([c for s in snippets(GOOD, "g") for c in commands_in(s)]) == 5


@pytest.mark.parametrize("stale, says", [
    ("--ratio auto --tile 512 photo.ARW", "--ratio auto --tyle 512 photo.ARW"),  # misspelt option after a `\`
    ("--compare-paper`", "--compare-papers`"),  # inline span through test.sh
    ("train.epochs=2", "train.epoch=2"),  # --set key
    ("data.train.patch_size=256", "data.train.patch_size=big"),  # --set value of the wrong type
    ("`train.fast`", "`train.fastpath`"),  # a key in prose
    ("`test.amp: bf16`", "`test.amp: bf17`"),  # a value not among the choices
    ("configs/demo.yaml --set", "configs/demos.yaml --set"),  # a config that does not exist
    ("python scripts/infer.py", "python scripts/inference.py"),  # a script that does not exist
    ("[--size H W]", "[--sizes H W]"),  # module's parser
    ("-m cans.cli.profile", "-m cans.cli.profiles"),  # a module that does not exist
    ("gpu_check.sh OUT", "gpu_check.sh --quick OUT"),  # a shell script without options
    ("--tile 512 photo.ARW", "--tile 512 --overlap"),  # does not parse (--overlap needs a value)
    ("`--tile auto`", "`--tiles-auto`"),  # an option in prose that no script has
    ("`--amp off|bf16`", "`--amp off|bfloat16`"),  # a value in prose that no parser accepts
])
def test_each_check_can_fail(stale, says):
    assert stale in GOOD
    problems = _problems_of_markdown(GOOD.replace(stale, says))
    assert problems, f"{says!r} passed the checks"


# ------------------- no documented make_synthetic_sid.py command writes into the other camera's demo folder

def test_documented_synthetic_sets_go_to_the_folder_of_their_camera():
    import re
    import shlex

    repo = REPO
    camera_of = {}   # demo data folder -> the camera its config reads
    for name in ("demo.yaml", "demo_fuji.yaml"):
        cfg = load_config(str(repo / "configs" / name))
        camera_of[cfg["data"]["data_path"]] = "Fuji" if cfg["data"]["type"] == "FujiDictSet" else "Sony"
    assert camera_of == {"datasets/synthetic_sid": "Sony", "datasets/synthetic_sid_fuji": "Fuji"}
    commands = []
    for doc in [repo / "README.md", repo / "datasets" / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            if re.search(r"make_synthetic_sid\.py .*--out", line):
                words = shlex.split(re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).strip("` "))
                out = words[words.index("--out") + 1]
                camera = words[words.index("--camera") + 1] if "--camera" in words else "Sony"
                commands.append((f"{doc.name}:{number}", out, camera))
    assert commands, "no make_synthetic_sid.py command found in the docs"
    wrong = [(where, out, camera) for where, out, camera in commands if camera_of.get(out, camera) != camera]
    assert not wrong, f"a documented command puts a set where a demo of the other camera reads: {wrong}"
