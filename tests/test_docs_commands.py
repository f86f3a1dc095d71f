"""Every ``pbx-bridge …`` command shown in README.md, docs/**/*.md and settings.toml.example
goes through the real argparse parser, so the documented forms cannot drift from the CLI.

Where commands are found: fenced and indented code blocks, inline code spans (which may wrap a
line), and backtick spans in the comments of settings.toml.example. A command named in prose
outside backticks fails the test (it could not be checked). Synopsis notation: ``[--opt X]`` is
optional (the command is parsed with and without it), UPPERCASE words are placeholders from
PLACEHOLDERS (``ID…`` repeats), ``<x>`` inside a value is left as it is.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {
    "ID": "1",
    "N": "7",
    "DAYS": "7",
    "DATE": "2026-03-01",
    "YYYY-MM-DD": "2026-03-01",
    "URL": "http://127.0.0.1:8080/webhooks/onlinepbx/t0ken",
    "EVENT": "call_end",
    "NAME": "local",
    "CRM": "local",
    "FILE": "settings.toml",
    "PHONE": "+79221111123",
    "EXT": "101",
    "EXTENSION": "101",
    "DOMAIN": "example.onpbx.ru",
    "DIRECTION": "inbound",
    "TOKEN": "t0ken",
    "PASSWORD": "secret-password",
    "USER": "admin",
}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&"}
FENCE = re.compile(r"^ *(```|~~~)[^\n]*\n(.*?)^ *\1 *$", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")


@dataclass(frozen=True)
class Shown:
    where: str  # file:line
    text: str  # the command line as the doc shows it


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def snippets(path: Path) -> list[tuple[int, str]]:
    """(line, code) for every code block line and inline span of a file."""
    text = path.read_text(encoding="utf-8")
    out: list[tuple[int, str]] = []
    if path.suffix == ".md":
        for m in FENCE.finditer(text):
            first = _line_of(text, m.start(2))
            out += [(first + i, line) for i, line in enumerate(_joined(m.group(2)))]
        prose = _prose(text)
        for i, line in enumerate(text.splitlines(), 1):
            if _indented_code(line):
                out.append((i, line.strip()))
        out += [(_line_of(prose, m.start()), m.group(1)) for m in INLINE.finditer(prose)]
    else:  # settings.toml.example: backtick spans in comments
        comments = "\n".join(line.partition("#")[2] for line in text.splitlines())
        out += [(_line_of(comments, m.start()), m.group(1)) for m in INLINE.finditer(comments)]
    return out


def _indented_code(line: str) -> bool:
    return line.startswith("    ") and not line.lstrip().startswith(("-", "*"))


def _prose(markdown: str) -> str:
    """The text outside code blocks and headings (a heading names a command, it shows none);
    line numbers are kept."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    return "\n".join(
        "" if _indented_code(line) or line.startswith("#") else line for line in text.splitlines()
    )


def _joined(block: str) -> list[str]:
    """Code block lines with ``\\`` continuations joined (one entry per physical line kept)."""
    lines = block.splitlines()
    out, buf = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            out.append("")
        else:
            out.append(buf + line)
            buf = ""
    return out


def commands_in(code: str) -> list[list[str]]:
    """The ``pbx-bridge`` invocations in one line of shell (arguments after the program)."""
    try:
        tokens = shlex.split(code.replace("\n", " "), comments=True)
    except ValueError:
        return []
    found, segment = [], []
    for token in [*tokens, ";"]:
        if token not in SHELL_OPERATORS:
            segment.append(token)
            continue
        segment = _program_first(segment)
        if segment and segment[0].rsplit("/", 1)[-1] == "pbx-bridge":
            found.append(segment[1:])
        elif (
            len(segment) >= 3
            and re.fullmatch(r"python3?(\.\d+)?", segment[0].rsplit("/", 1)[-1])
            and segment[1:3] == ["-m", "bridge"]
        ):
            found.append(segment[3:])
        segment = []
    return found


WRAPPERS = {"sudo", "env", "exec", "nohup", "time"}
WRAPPER_OPTIONS_WITH_VALUE = {"-u", "-g", "--user", "--group"}


def _program_first(segment: list[str]) -> list[str]:
    """Drop what runs the program: ``FOO=bar``, ``sudo -u user``, ``env``; a systemd unit's
    ``ExecStart=/x/pbx-bridge`` becomes the program itself."""
    segment = list(segment)
    while segment:
        head = segment[0]
        assignment = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=(.*)", head)
        unit_line = assignment and head.startswith("Exec")
        if unit_line and assignment.group(1).rsplit("/", 1)[-1] == "pbx-bridge":
            segment[0] = assignment.group(1)
            return segment
        if assignment or head in WRAPPERS:
            segment.pop(0)
            while head == "sudo" and segment and segment[0].startswith("-"):
                option = segment.pop(0)
                if option in WRAPPER_OPTIONS_WITH_VALUE and segment:
                    segment.pop(0)
            continue
        return segment
    return segment


def shown_commands() -> list[Shown]:
    shown = []
    for path in [*doc_files(), ROOT / "settings.toml.example"]:
        for line, code in snippets(path):
            for argv in commands_in(code):
                where = f"{path.relative_to(ROOT)}:{line}"
                shown.append(Shown(where, " ".join(argv)))
    return shown


def variants(argv_text: str) -> list[list[str]]:  # the tokens joined by spaces
    """Every optional group left out, and every one put in (placeholders filled)."""
    optional = re.compile(r"\[([^\[\]]*)\]")
    without, with_all = argv_text, argv_text
    while optional.search(without):
        without = optional.sub("", without)
    while optional.search(with_all):
        with_all = optional.sub(r"\1", with_all)
    out = []
    for text in dict.fromkeys([without, with_all]):
        out.append([_fill(token) for token in shlex.split(text)])
    return out


def _fill(token: str) -> str:
    option, eq, value = token.partition("=")
    if eq and option.startswith("--"):
        return f"{option}={_fill(value)}"
    bare = token.rstrip("…").removesuffix("...")
    if bare != token and not bare:
        raise AssertionError("a bare `…` is not a value: write a placeholder such as DATE")
    if re.fullmatch(r"[A-Z][A-Z0-9_-]*", bare):
        if bare not in PLACEHOLDERS:
            raise AssertionError(f"unknown placeholder {bare}: add it to PLACEHOLDERS")
        return PLACEHOLDERS[bare]
    if re.fullmatch(r"<[^<>]+>", bare):
        return bare.strip("<>")
    if "|" in bare and not bare.startswith(("http://", "https://")):
        raise AssertionError(f"{token!r}: show one form per command, not a|b alternatives")
    return bare


def parses(argv: list[str]) -> None:
    """Raises AssertionError with argparse's message when the real parser refuses ``argv``."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0: a valid form
        if exc.code not in (0, None):
            raise AssertionError(f"pbx-bridge {shlex.join(argv)}: the parser refuses it") from exc


SHOWN = shown_commands()


@pytest.mark.parametrize("shown", SHOWN, ids=lambda s: f"{s.where} {s.text}")
def test_documented_command_parses(shown, capsys):
    for argv in variants(shown.text):
        parses(argv)
        assert argv, f"{shown.where}: `pbx-bridge` without a command"
    capsys.readouterr()


def test_the_commands_are_found():
    """The extractor sees the forms the README and the example show (else it checks nothing)."""
    texts = {(s.where.split(":")[0], s.text) for s in SHOWN}
    assert ("README.md", "serve --config settings.toml") in texts
    assert ("settings.toml.example", "serve --config settings.toml") in texts
    assert any(w == "docs/RECORDINGS.md" and t.startswith("backfill") for w, t in texts)
    assert len({w for w, _ in texts}) >= 4


def test_commands_named_in_prose_are_in_backticks():
    """``pbx-bridge check`` written without backticks could not be checked: refuse it."""
    names = set(_command_names())
    offenders = []
    for path in [*doc_files(), ROOT / "settings.toml.example"]:
        text = path.read_text(encoding="utf-8")
        text = _prose(text) if path.suffix == ".md" else text
        text = INLINE.sub("", text)
        for m in re.finditer(r"pbx-bridge ([a-z][a-z-]*)", text):
            if m.group(1) in names:
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not offenders


def _command_names() -> list[str]:
    import argparse

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


@pytest.mark.parametrize(
    ("doc", "bad"),
    [
        ("Run `pbx-bridge serve --prot 80`.", True),
        ("```sh\npbx-bridge outbox purge --older-than 3\n```\n", True),
        ("```sh\nPBX_BRIDGE_CONFIG=s.toml pbx-bridge check | less\n```\n", False),
        ("    pbx-bridge backfill --since DATE [--until DATE] [--dry-run]\n", False),
        ("    pbx-bridge backfill [--dry-run]\n", True),  # --since is required
        ("`pbx-bridge nosuchcommand`", True),
        ("```ini\nExecStart=/opt/x/.venv/bin/pbx-bridge serve --confg /etc/s.toml\n```\n", True),
        ("```sh\nsudo -u pbx-bridge /opt/x/bin/pbx-bridge check --adaptr x\n```\n", True),
        ("```sh\nsudo -u pbx-bridge /opt/x/bin/pbx-bridge check --adapter x\n```\n", False),
    ],
)
def test_the_check_catches_a_wrong_doc(tmp_path, doc, bad):
    path = tmp_path / "doc.md"
    path.write_text(doc)
    found = [argv for _, code in snippets(path) for argv in commands_in(code)]
    assert found, "the extractor missed the command"
    failures = 0
    for argv in found:
        for variant in variants(" ".join(argv)):
            try:
                parses(variant)
            except AssertionError:
                failures += 1
    assert bool(failures) == bad
