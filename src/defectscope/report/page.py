"""The frame every report page shares: inline CSS, the figure-check script, title, subtitle and links.

Kept apart from `build` (which imports the engine, hence torch) so the page of a predict folder
(`predictions`) is made with the standard library and Pillow alone.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:16px 24px;
color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin-bottom:0.2em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
h3{margin-bottom:6px}table{border-collapse:collapse;font-size:0.9em;margin:6px 0}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}.reported{background:#fff6e0}.scroll{overflow-x:auto}
figure{margin:10px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.note{color:#555;font-size:0.85em}nav a{margin-right:12px}
section.cell{border-top:3px solid #444;margin-top:28px}code{background:#f4f4f4;padding:0 3px}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + images.length);
  document.body.setAttribute('data-figures-loaded', ok === images.length ? 'all' : 'missing');
});
"""


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, css: str = "") -> str:
    """The whole HTML document; `css` adds rules of that page's own."""
    links = "".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t in nav)
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_CSS}{css}</style><script>{_SCRIPT}</script></head>"
        f"<body data-figures-loaded=pending><h1>{html.escape(title)}</h1><p class=note>{html.escape(subtitle)} "
        f"Report made {made} by defectscope; self-contained, opens offline.</p><nav>{links}</nav>\n{body}\n"
        "</body></html>\n"
    )


def write_page(output: Path, text: str) -> Path:
    """Write the page under a temporary name and rename it into place, so a reader never sees half of it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text)
    tmp.replace(output)
    return output
