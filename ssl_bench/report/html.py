"""index.html: summary.md as a self-contained page that opens from disk (no network, no script, no CDN).

A small converter for the Markdown subset the report writes: headings, bullet lists, pipe tables, images on
their own line, paragraphs, **bold** and `code`. Images stay relative file names next to index.html.
"""

from __future__ import annotations

import html
import re

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em;
       color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 1.8em; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
li { margin: .15em 0; }
"""
IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        bold, code = m.group(1), m.group(2)
        out.append(f"<strong>{inline(bold)}</strong>" if bold is not None else f"<code>{html.escape(code)}</code>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def markdown_to_html(text: str, title: str = "ssl-bench report") -> str:
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
            continue
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        image = IMAGE.match(line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
        elif image:
            alt, src = image.group("alt"), image.group("src")
            body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">')
            i += 1
            if i + 1 < len(lines) and not lines[i].strip() and lines[i + 1].strip() and not _is_block(lines[i + 1]):
                body.append(f"<figcaption>{inline(lines[i + 1].strip())}</figcaption>")  # the caption paragraph
                i += 2
            body.append("</figure>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head, rest = _cells(rows[0]), [r for r in rows[1:] if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
            header = "".join(f"<th>{inline(c)}</th>" for c in head)
            body.append(f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>')
            body += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in rest]
            body.append("</tbody></table></div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:].strip())}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _is_block(lines[i]):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{inline(' '.join(para))}</p>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _is_block(line: str) -> bool:
    return line.startswith(("#", "|", "- ")) or bool(IMAGE.match(line.rstrip()))
