"""A static ``report/index.html``: metrics tables, pictures, samples and token views in one
page that opens offline (no scripts, no CDN; images next to it)."""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.tokens{font-family:ui-monospace,monospace;line-height:1.9}.tok{border-radius:3px;padding:1px 0}
pre{background:#f7f7f7;padding:.7em;white-space:pre-wrap;border-radius:4px}
.muted{color:#777}
"""


@dataclass
class Section:
    """One ``<h2>`` of the page: tables (caption, header, rows), figures (caption, path),
    pre-rendered HTML blocks (token views) and generated samples."""

    title: str
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    samples: dict[str, Any] | None = (
        None  # {"settings": {...}, "samples": [{prompt, mode, completion}]}
    )

    @property
    def empty(self) -> bool:
        return not (self.tables or self.figures or self.html or self.samples)


def fmt(value: Any) -> str:
    """A table cell: four significant digits for small floats; large ones (tokens/s, word
    perplexity) as whole numbers with separators, like the integers beside them."""
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def table_from_dict(rows: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """``{row: {column: value}}`` -> header and rows (columns in first-seen order)."""
    columns: list[str] = []
    for values in rows.values():
        columns += [c for c in values if c not in columns and not isinstance(values[c], dict)]
    return ["", *columns], [[name, *(v.get(c, "") for c in columns)] for name, v in rows.items()]


def render(title: str, subtitle: str, sections: list[Section], out_dir: str | Path) -> Path:
    """Write ``index.html`` into ``out_dir``; figures outside it are copied next to it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='muted'>{html.escape(subtitle)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for caption, header, rows in section.tables:
            parts.append(
                f"<h3>{html.escape(caption)}</h3><table><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                + "</tr>"
            )
            parts += ["<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        for caption, path in section.figures:
            rel = _place(Path(path), out_dir)
            parts.append(
                f"<figure><img src='{html.escape(rel)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts += section.html
        if section.samples:
            parts += _samples(section.samples)
    parts.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def _samples(block: dict[str, Any]) -> list[str]:
    settings = ", ".join(f"{k}={v}" for k, v in block["settings"].items())
    parts = [f"<h3>Samples</h3><p class='muted'>{html.escape(settings)}</p>"]
    for x in block["samples"]:
        parts.append(
            f"<p><span class='muted'>{html.escape(x['mode'])}</span></p><pre>"
            f"<b>{html.escape(x['prompt'])}</b>{html.escape(x['completion'])}</pre>"
        )
    return parts


def _place(path: Path, out_dir: Path) -> str:
    """A figure's path relative to the page, copying it under ``figures/`` if it lives elsewhere."""
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        target = out_dir / "figures" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target.relative_to(out_dir).as_posix()
