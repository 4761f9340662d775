"""Markdown and self-contained HTML (inline CSS, plots embedded as base64 PNG) from report sections."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from .blocks import BulletList, CodeBlock, Figure, Paragraph, Section, Table
from .format import NA, cell_strings, format_markdown_table, right_aligned


def relative_link(path: Path, run_dir: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return path.as_posix()


def render_markdown(sections: Sequence[Section], run_dir: Path) -> str:
    lines: list[str] = []
    for section in sections:
        lines.extend([f"{'#' * section.level} {section.title}", ""])
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.extend([block.text, ""])
            elif isinstance(block, BulletList):
                lines.extend([*(f"- {item}" for item in block.items), ""])
            elif isinstance(block, CodeBlock):
                lines.extend(["```", block.text, "```", ""])
            elif isinstance(block, Table):
                if block.source:
                    lines.extend([block.source, ""])
                lines.extend([format_markdown_table(block.frame, block.floatfmt), ""])
            elif isinstance(block, Figure):
                link = relative_link(block.path, run_dir)
                lines.extend([f"![{block.path.stem}]({link})", "", block.caption, ""])
    return "\n".join(lines).rstrip() + "\n"


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
    return (
        f'<figure><img alt="{html.escape(figure.path.stem, quote=True)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{inline_html(figure.caption)}</figcaption></figure>"
    )


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
"""


def render_html(sections: Sequence[Section], title: str) -> str:
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
    for section in sections:
        level = min(max(section.level, 1), 6)
        parts.append(f"<h{level}>{html.escape(section.title)}</h{level}>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{inline_html(block.text)}</p>")
            elif isinstance(block, BulletList):
                parts.append(
                    "<ul>"
                    + "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
                    + "</ul>"
                )
            elif isinstance(block, CodeBlock):
                parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            elif isinstance(block, Table):
                parts.append(html_table(block))
            elif isinstance(block, Figure):
                parts.append(html_figure(block))
    parts.extend(["</body>", "</html>"])
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------------
# Entry point
