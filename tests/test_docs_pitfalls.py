"""Every pitfall cited in the source ("pitfall P3", "(P15)") is defined in docs/architecture.md."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "editdecay"
DOC = ROOT / "docs" / "architecture.md"

# "pitfall P3", "pitfalls P1 and P2", "pitfalls P4, P16"
_NAMED = re.compile(r"\bpitfalls?\s+P\d+(?:\s*(?:,|/|&|\band\b|\bor\b)\s*P\d+)*", re.IGNORECASE)
# "(P12)", "(P15 quirks kept)": the short form used in comments and docstrings
_PARENTHESISED = re.compile(r"\(P(\d+)\b")
_NUMBER = re.compile(r"P(\d+)")
# a Markdown heading or list item that starts with P<n>, bold or not: "- **P3 Block outputs.**"
_DEFINITION = re.compile(r"^\s*(?:#+|[-*+]|\d+[.)])\s+(?:\*\*|__)?P(\d+)\b", re.MULTILINE)


def _cited_at(text: str) -> list[tuple[int, int]]:
    """(pitfall number, character offset) of every citation in a piece of comment or string text."""
    out = [
        (int(n.group(1)), m.start() + n.start())
        for m in _NAMED.finditer(text)
        for n in _NUMBER.finditer(m.group())
    ]
    return out + [(int(m.group(1)), m.start()) for m in _PARENTHESISED.finditer(text)]


def cited(text: str) -> set[int]:
    """Pitfall numbers cited in a piece of comment or string text."""
    return {n for n, _ in _cited_at(text)}


def defined(markdown: str) -> list[int]:
    """Pitfall numbers defined as headings or list items, in page order."""
    return [int(n) for n in _DEFINITION.findall(markdown)]


def citations(root: Path = SRC) -> dict[int, list[str]]:
    """Pitfall number → "path:line" of every citation in the comments and strings of root's .py files.

    Only comments and string literals are read, so code such as `(P64 @ K)` is never a citation.
    """
    found: dict[int, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        source = path.read_text(encoding="utf-8")
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.STRING):
                continue
            for number, offset in _cited_at(tok.string):
                line = tok.start[0] + tok.string.count("\n", 0, offset)
                found.setdefault(number, []).append(f"{name}:{line}")
    return found


def test_the_citation_patterns():
    text = "so both work (pitfall P3); see pitfalls P1 and P2, pitfalls P4, P16"
    assert cited(text) == {1, 2, 3, 4, 16}
    assert cited("weight_decay · ‖δ‖ (P15 quirks kept), seeded (P12)") == {12, 15}
    assert cited("A = P64 @ K, a P-value, PEP 8, P1") == set()
    assert defined("## P2 BOS\n- **P3 Hooks.** text\n* P4: x\ntext P5\n  1. P6 y\n") == [2, 3, 4, 6]


def test_an_undefined_citation_is_caught(tmp_path):
    (tmp_path / "m.py").write_text(
        '"""Doc.\n\nSee (P3) and pitfall P99."""\n\nA = (P64 @ K)  # pitfalls P1, P2\n'
    )
    found = citations(tmp_path)
    assert sorted(found) == [1, 2, 3, 99]
    assert found[99] == [f"{tmp_path / 'm.py'}:3"]
    assert 99 not in defined(DOC.read_text(encoding="utf-8"))


def test_the_source_cites_pitfalls():
    assert citations(), "no pitfall citation found in src/: has the citation form changed?"


def test_every_cited_pitfall_is_defined_in_the_architecture_page():
    definitions = set(defined(DOC.read_text(encoding="utf-8")))
    missing = {n: where for n, where in sorted(citations().items()) if n not in definitions}
    assert not missing, (
        "pitfalls cited in src/ but not defined in docs/architecture.md: "
        + "; ".join(f"P{n} ({', '.join(where)})" for n, where in missing.items())
    )


def test_the_pitfall_list_is_numbered_once_and_in_order():
    numbers = defined(DOC.read_text(encoding="utf-8"))
    assert numbers == list(range(1, len(numbers) + 1)), numbers
