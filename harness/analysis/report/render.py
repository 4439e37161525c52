"""The report's blocks (headings, paragraphs, lists, tables, figures) and how each is written.

A section of the report is a list of blocks; Markdown and a self-contained HTML page are two
renderings of the same list, so a new section or line needs no change here.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis.report.text import num


@dataclass(frozen=True)
class Heading:
    """A section heading (level 1 is the title)."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Items:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table; cells are written with ``num``."""

    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    """A figure: its path relative to the report folder and its caption."""

    path: str
    caption: str


Block = Heading | Para | Items | Table | Image


def _md_cell(value: object) -> str:
    return num(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """Render report blocks as Markdown."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Items):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            df = block.frame
            lines = ["| " + " | ".join(map(str, df.columns)) + " |",
                     "|" + "---|" * len(df.columns)]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
                      for row in df.itertuples(index=False)]
            out.append("\n".join(lines))
        else:
            out.append(f"![{block.caption}]({block.path})")
    return "\n\n".join(out) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid
#ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;
margin:1em 0}"""


def _html_block(block: Block, base: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        df = block.frame
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(num(v))}</td>" for v in row) + "</tr>"
            for row in df.itertuples(index=False)
        )
        return f"<table><tr>{head}</tr>{body}</table>"
    data = base64.b64encode((base / block.path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(block.caption)}' "
            f"src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")


def to_html(blocks: list[Block], base: Path) -> str:
    """Render report blocks as a self-contained HTML page (figures embedded as data URIs)."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Report")
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    out += [_html_block(block, base) for block in blocks]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
