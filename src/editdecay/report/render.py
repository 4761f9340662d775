"""Markdown and self-contained HTML (inline CSS, plots embedded as base64 PNG) from report sections.

Both open with the first (title) section, then a table of contents of the other sections; a
:class:`~.blocks.Details` block is a collapsed ``<details>`` element in both.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from .blocks import Block, BulletList, CodeBlock, Details, Figure, Paragraph, Section, Table
from .format import NA, cell_strings, format_markdown_table, right_aligned


def anchors(sections: Sequence[Section]) -> list[str]:
    """GitHub-style heading anchors: lower-case, punctuation dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = []
    for section in sections:
        base = "".join(
            c for c in section.title.lower() if c in " -_" or unicodedata.category(c)[0] in "LN"
        ).replace(" ", "-")
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(base if count == 0 else f"{base}-{count}")
    return out


def relative_link(path: Path, run_dir: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------------------------------
# Markdown


def render_markdown(sections: Sequence[Section], run_dir: Path, *, contents: bool = True) -> str:
    lines: list[str] = []
    ids = anchors(sections)
    for index, section in enumerate(sections):
        lines.extend([f"{'#' * section.level} {section.title}", ""])
        for block in section.blocks:
            lines.extend(_markdown_block(block, run_dir))
        if index == 0 and contents and len(sections) > 2:
            lines.extend(_markdown_contents(sections[1:], ids[1:]))
    return "\n".join(lines).rstrip() + "\n"


def _markdown_contents(sections: Sequence[Section], ids: Sequence[str]) -> list[str]:
    items = [f"- [{s.title}](#{anchor})" for s, anchor in zip(sections, ids) if s.level <= 2]
    return ["**Contents**", "", *items, ""]


def _markdown_block(block: Block, run_dir: Path) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, BulletList):
        return [*(f"- {item}" for item in block.items), ""]
    if isinstance(block, CodeBlock):
        return ["```", block.text, "```", ""]
    if isinstance(block, Table):
        source = [block.source, ""] if block.source else []
        return [*source, format_markdown_table(block.frame, block.floatfmt), ""]
    if isinstance(block, Figure):
        link = relative_link(block.path, run_dir)
        return [f"![{block.path.stem}]({link})", "", block.caption, ""]
    if isinstance(block, Details):
        inner = [line for b in block.blocks for line in _markdown_block(b, run_dir)]
        return [
            f"<details><summary>{html.escape(block.summary)}</summary>",
            "",
            *inner,
            "</details>",
            "",
        ]
    raise TypeError(f"unknown report block {type(block).__name__}")


# --------------------------------------------------------------------------------------------------
# HTML

_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline_html(text: str) -> str:
    def plain(part: str) -> str:
        escaped = html.escape(part, quote=True)
        escaped = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', escaped)
        return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", escaped)

    pieces: list[str] = []
    position = 0
    for match in _CODE_SPAN.finditer(text):
        pieces.append(plain(text[position : match.start()]))
        pieces.append(f"<code>{html.escape(match.group(1))}</code>")
        position = match.end()
    pieces.append(plain(text[position:]))
    return "".join(pieces)


def html_table(table: Table) -> str:
    frame = table.frame
    rows = cell_strings(frame, table.floatfmt, NA)
    right = right_aligned(frame, rows, NA)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>' if r else f"<td>{html.escape(c)}</td>"
            for c, r in zip(row, right)
        )
        + "</tr>"
        for row in rows
    )
    parts = []
    if table.source:
        parts.append(f'<p class="source">{inline_html(table.source)}</p>')
    parts.append(
        f'<div class="scroll"><table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>'
        "\n</table></div>"
    )
    return "\n".join(parts)


def html_figure(figure: Figure) -> str:
    encoded = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    alt = html.escape(figure.path.stem, quote=True)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{inline_html(figure.caption)}</figcaption></figure>"
    )


def _html_blocks(blocks: Iterable[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, BulletList):
            items = "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
            parts.append(f"<ul>{items}</ul>")
        elif isinstance(block, CodeBlock):
            parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Table):
            parts.append(html_table(block))
        elif isinstance(block, Figure):
            parts.append(html_figure(block))
        elif isinstance(block, Details):
            inner = "\n".join(_html_blocks(block.blocks))
            summary = inline_html(block.summary)
            parts.append(f"<details><summary>{summary}</summary>\n{inner}\n</details>")
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return parts


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1280px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .4em 0 1.4em; font-size: .88em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; vertical-align: top; }
th { background: #f3f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
div.scroll { overflow-x: auto; }
p.source { color: #555; font-size: .85em; margin-bottom: .3em; }
pre { background: #f6f8fa; padding: .7em; overflow-x: auto; }
code { background: #f3f4f6; padding: 0 .2em; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: .88em; }
nav.toc { background: #f8f9fb; border: 1px solid #e3e6ea; padding: .4em 1.2em; margin: 1em 0;
          columns: 2; font-size: .92em; }
nav.toc ol { margin: .3em 0; }
details { margin: .3em 0 1.2em; }
details > summary { cursor: pointer; color: #2a5d9f; }
"""


def render_html(sections: Sequence[Section], title: str, *, contents: bool = True) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]
    ids = anchors(sections)
    for index, (section, anchor) in enumerate(zip(sections, ids)):
        level = min(max(section.level, 1), 6)
        parts.append(f'<h{level} id="{anchor}">{html.escape(section.title)}</h{level}>')
        parts.extend(_html_blocks(section.blocks))
        if index == 0 and contents and len(sections) > 2:
            items = "".join(
                f'<li><a href="#{a}">{html.escape(s.title)}</a></li>'
                for s, a in zip(sections[1:], ids[1:])
                if s.level <= 2
            )
            parts.append(f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>')
    parts.extend(["</body>", "</html>"])
    return "\n".join(parts) + "\n"
