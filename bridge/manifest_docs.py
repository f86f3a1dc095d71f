"""The parts of the docs that the adapters' manifests write: README.md's adapter table and the
adapter sections of settings.toml.example.

Each adapter says what it is once: its manifest (name, aliases, title, summary, docs page) and
the TOML example on its docs page (which tests/test_docs.py loads and validates through the
adapter's settings class). From those, ``python -m bridge.manifest_docs`` rewrites

- the table under ``## Adapters`` in README.md (one row per adapter: ``local`` and ``http``
  first, then the CRMs by name), and
- everything in settings.toml.example after its ``MARKER`` line: per adapter, a heading comment
  from the manifest and the docs page's example, commented out (only the default adapter's
  table header stays active, so the example runs what the bridge runs without a file).

``--check`` writes nothing and fails naming the stale file; tests/test_docs.py asserts that
both committed files are what this module writes, so a new adapter folder (or a changed docs
example) shows up in them by running the command, never by copying text by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

from bridge.adapter.manifest import Manifest
from bridge.registry import DEFAULT_ADAPTER, manifests

ROOT = Path(__file__).resolve().parents[1]  # a source checkout: the docs are not installed
FIRST = ("local", "http")  # the two generic adapters open the list, then the CRMs by name
MARKER = (
    "# --- The sections below are written from each adapter's manifest and docs page by\n"
    "# `python -m bridge.manifest_docs`: edit those, not these lines."
)
README_HEADER = "| name | what it does | docs |"
_TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
WIDTH = 100


def ordered() -> list[Manifest]:
    """Every registered adapter once (aliases folded into their adapter), in docs order."""
    found = [m for name, m in manifests().items() if name == m.name]
    found.sort(key=lambda m: (FIRST.index(m.name) if m.name in FIRST else len(FIRST), m.name))
    return found


def readme_table() -> str:
    rows = [README_HEADER, "|---|---|---|"]
    for m in ordered():
        names = ", ".join(f"`{n}`" for n in (m.name, *m.aliases))
        rows.append(f"| {names} | {m.summary} | [{m.docs}]({m.docs}) |")
    return "\n".join(rows)


def docs_example(m: Manifest, root: Path = ROOT) -> str:
    """The ``[adapters.<name>]`` TOML example on the adapter's docs page (its first block)."""
    page = root / m.docs
    block = _TOML_BLOCK.search(page.read_text(encoding="utf-8"))
    if block is None:
        raise ValueError(f"{m.docs} ({m.name}) has no ```toml example")
    return block.group(1).strip("\n")


_INLINE = re.compile(r"(\S)  ( +#)")  # a value, then its aligned comment


def _commented(line: str) -> str:
    """A docs example line as a comment; a key's aligned comment keeps its column."""
    if not line.strip() or line.startswith("#"):
        return line
    if line.startswith(" "):  # a comment continued under the one above
        return f"#{line[1:]}" if line.startswith("  ") else f"#{line}"
    return "# " + _INLINE.sub(r"\1\2", line, count=1)


def example_section(m: Manifest, root: Path = ROOT) -> str:
    heading = textwrap.wrap(
        f"{m.title or m.name} ({m.docs}): {m.summary}.",
        WIDTH - 2,
        break_on_hyphens=False,
    )
    lines = [f"# {text}" for text in heading]
    for line in docs_example(m, root).splitlines():
        header = line.lstrip().startswith(f"[adapters.{m.name}]")
        lines.append(line if header and m.name == DEFAULT_ADAPTER else _commented(line))
    return "\n".join(line.rstrip() for line in lines)


def example_sections(root: Path = ROOT) -> str:
    return "\n\n".join(example_section(m, root) for m in ordered()) + "\n"


def settings_example(current: str, root: Path = ROOT) -> str:
    """``current`` (settings.toml.example as it is) with its adapter sections rewritten."""
    head, marker, _ = current.partition(MARKER)
    if not marker:
        raise ValueError(f"settings.toml.example has no marker line: {MARKER!r}")
    return f"{head}{MARKER}\n\n{example_sections(root)}"


def readme(current: str) -> str:
    """``current`` (README.md as it is) with its adapter table rewritten."""
    lines = current.split("\n")
    try:
        start = lines.index(README_HEADER)
    except ValueError:
        raise ValueError(f"README.md has no adapter table (a line {README_HEADER!r})") from None
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join([*lines[:start], readme_table(), *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.manifest_docs",
        description="Rewrite README.md's adapter table and settings.toml.example's adapter"
        " sections from the adapters' manifests and docs pages.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the source checkout")
    args = parser.parse_args(argv)
    stale = []
    for name, build in (
        ("README.md", readme),
        ("settings.toml.example", lambda text: settings_example(text, args.root)),
    ):
        path = args.root / name
        current = path.read_text(encoding="utf-8")
        try:
            wanted = build(current)
        except (OSError, ValueError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        if wanted == current:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(wanted, encoding="utf-8")
            print(f"rewrote {name}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run python -m bridge.manifest_docs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
