"""`defectscope report PREDICT_DIR`: one self-contained HTML page of what `defectscope predict` wrote.

Read from scores.json (the promise, the counts, one row per input) and maps/ (each input beside its
heatmap and colour scale). The page says first what the threshold promises and how many parts it
flagged, then shows the flagged parts (highest normalised score first), the passed ones (closest
to the threshold first, folded away), the inputs that could not be scored with their reasons, and
the ground-truth files left out. Pictures are JPEG thumbnails of the map pictures embedded as
data: URIs, at most `max_images` of them, so a folder of 100,000 parts still gives a page a
browser opens; the rows past the cap are listed without pictures, up to TABLE_ROWS a section.
Standard library and Pillow only: the page of a torch-free predict run needs no torch.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from defectscope.heatmap import SCALE_RED_SHARE, heat_colormap
from defectscope.predict.output import MAPS_DIR, REPORT_HTML, SCORES_CSV, SCORES_JSON
from defectscope.report.errors import ReportError
from defectscope.report.page import page, write_page

MAX_IMAGES = 100  # pictures in the page by default (`--max-images`): flagged ones first
TABLE_ROWS = 1000  # rows listed without a picture per section; the rest are in scores.csv
SKIPPED_SHOWN = 200  # ground-truth files named in the page
FLAGGED_WIDTH = 540  # px: a flagged part's picture (input | heatmap, colour scale beneath); two fit a row
PASSED_WIDTH = 360  # px: a passed part's picture
JPEG_QUALITY = 80

_CSS = """
.promise{font-size:1.05em;background:#f6f8fb;border-left:4px solid #3b7dd8;padding:8px 12px}
.part{display:inline-block;vertical-align:top;margin:8px 14px 10px 0;max-width:100%}
.part figcaption{color:#1d1d1f;font-size:0.88em}.part code{word-break:break-all}
table.reasons th{text-align:left}
.defect{color:#b3261e;font-weight:600}.pass{color:#1e7b34;font-weight:600}
.scale{height:14px;border:1px solid #333;margin:4px 0;max-width:520px}
details>summary{cursor:pointer;font-weight:600;margin:8px 0}
td.path{text-align:left;font-family:ui-monospace,monospace;font-size:0.85em;word-break:break-all}
"""


def is_predict_folder(directory: Path) -> bool:
    """A `defectscope predict` output: scores.json, and no results.json (a run's or a benchmark's)."""
    return (directory / SCORES_JSON).is_file() and not (directory / "results.json").is_file()


def load_predictions(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """scores.json's header (everything but the rows) and its rows, in input order."""
    try:
        data = json.loads((directory / SCORES_JSON).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{directory / SCORES_JSON}: cannot read ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ReportError(f"{directory / SCORES_JSON}: no `images` list; not written by `defectscope predict`")
    rows = data.pop("images")
    for index, row in enumerate(rows):
        row["index"] = index
    return data, rows


# --------------------------------------------------------------------------- words


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.3g} %"


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _normalised(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def promise_html(header: dict[str, Any]) -> str:
    """What the threshold promises, in one paragraph: the stated rate, the bound and how many held-out parts."""
    threshold = header.get("image_threshold")
    if threshold is None:
        return ("<p class=promise>No calibrated threshold in this model: every part has a score but no verdict "
                "(fit or train with held-out good parts, or set one with <code>defectscope threshold</code>).</p>")
    rate, bound, held_out = (header.get(k) for k in ("false_alarm_rate", "false_alarm_bound", "held_out_normals"))
    stated = (f"calibrated for a stated false-alarm rate of <b>{_percent(rate)}</b>" if rate is not None
              else "set directly, not from a stated rate")
    promise = (f": a good part like the <b>{held_out}</b> held-out good parts is flagged with probability at most "
               f"<b>{_percent(bound)}</b> (the promised bound)" if bound is not None and held_out else "")
    return (f"<p class=promise>Image threshold <b>{threshold:.6g}</b> (normalised score 0.5), {stated}{promise}. "
            "The promise holds for parts <i>like</i> the held-out ones: a new lot, other lighting or another "
            "camera can break it.</p>")


def counts_html(header: dict[str, Any], passed: int, unjudged: int) -> str:
    total, scored, failed, flagged = (int(header.get(k) or 0) for k in ("inputs", "scored", "failed", "defective"))
    skipped = int(header.get("ground_truth_skipped") or 0)
    share = f" ({100 * flagged / scored:.1f} % of those scored)" if scored else ""
    cells = [("inputs", str(total)), ("scored", str(scored)),
             ("flagged DEFECT", f"<span class=defect>{flagged}</span>{share}"),
             ("passed OK", f"<span class=pass>{passed}</span>")]
    if unjudged:
        cells.append(("scored, no verdict", str(unjudged)))
    cells += [("could not be scored", str(failed)), ("ground-truth files skipped", str(skipped))]
    head = "".join(f"<th>{name}</th>" for name, _ in cells)
    body = "".join(f"<td>{value}</td>" for _, value in cells)
    return (f"<div class=scroll><table class=counts><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody>"
            "</table></div>")


def legend_html(pixel_threshold: float | None) -> str:
    """The heatmaps' colours in words and as a bar drawn with the same ramp (heat_colormap)."""
    top = round(100 * (1 - SCALE_RED_SHARE))
    colours = heat_colormap(np.linspace(0, 1, 5, dtype=np.float32))
    stops = ", ".join(f"rgb({r},{g},{b}) {top * i // 4}%" for i, (r, g, b) in enumerate(colours.tolist()))
    red = "rgb({},{},{})".format(*colours[-1].tolist())
    bar = f"<div class=scale style='background:linear-gradient(to right, {stops}, {red} {top}%, {red} 100%)'></div>"
    if pixel_threshold is None:
        words = ("No pixel threshold in this model: each heatmap's colours run from that map's median (dark blue) "
                 "to its own maximum (red), so colours compare within one picture only.")
    else:
        words = (f"Each heatmap's colours run from that map's own median (dark blue, left) to the pixel threshold "
                 f"<b>{pixel_threshold:.4g}</b> (the black mark on each picture's scale); <b>red</b> is at or above "
                 "it: pixels beyond what held-out good pixels reach. Each picture carries its own scale beneath it.")
    return f"{bar}<p class=note>{words}</p>"


def _area(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _caption(row: dict[str, Any], rank: int, threshold: float | None) -> str:
    verdict = row.get("verdict")
    mark = {"DEFECT": "<span class=defect>DEFECT</span>", "OK": "<span class=pass>OK</span>"}.get(verdict or "",
                                                                                             "no verdict")
    score = row.get("score")
    against = ""
    if threshold is not None and score is not None:
        against = f" {'>' if verdict == 'DEFECT' else '≤'} threshold {threshold:.4g}"
    parts = [f"#{rank} {mark}", f"normalised score <b>{_normalised(row.get('normalized_score'))}</b>",
             f"score {_number(score)}{against}"]
    if row.get("defect_area") is not None:
        parts.append(f"defect area {_area(row['defect_area'])}")
    if row.get("class_name"):
        parts.append(html.escape(row["class_name"]))
    return " · ".join(parts) + f"<br><code>{html.escape(row['path'])}</code>"


# --------------------------------------------------------------------------- pictures


def thumbnail(file: Path, width: int) -> tuple[str, int]:
    """The map picture at most `width` px wide, as a JPEG data: URI, and its width."""
    with Image.open(file) as picture:
        picture = picture.convert("RGB")
        if picture.width > width:
            picture = picture.resize((width, max(1, round(picture.height * width / picture.width))), Image.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), picture.width


def _figure(directory: Path, row: dict[str, Any], rank: int, threshold: float | None, width: int) -> str:
    css = "part ok" if row.get("verdict") != "DEFECT" else "part"
    caption = _caption(row, rank, threshold)
    if not row.get("map"):
        return f"<figure class='{css}'><figcaption>{caption}<br><i>no map (predict ran with --no-maps)</i>" \
               "</figcaption></figure>"
    file = directory / MAPS_DIR / row["map"]
    try:
        src, shown = thumbnail(file, width)
    except OSError as err:
        return f"<figure class='{css}'><figcaption>{caption}<br><i>map {html.escape(str(file))} cannot be read: " \
               f"{html.escape(str(err))}</i></figcaption></figure>"
    alt = f"{row['path']}: input and heatmap"
    return f"<figure class='{css}' style='width:{max(shown, 300)}px'><img alt=\"{html.escape(alt)}\" " \
           f"src=\"{src}\"><figcaption>{caption}</figcaption></figure>"


def _table(rows: Sequence[dict[str, Any]], first_rank: int, threshold: float | None) -> str:
    """Rows past the picture cap: rank, verdict, scores and path, without pictures, up to TABLE_ROWS."""
    shown = rows[:TABLE_ROWS]
    if not shown:
        return ""
    body = "".join(
        f"<tr><td>{first_rank + i}</td><td>{html.escape(r.get('verdict') or '–')}</td>"
        f"<td>{_normalised(r.get('normalized_score'))}</td><td>{_number(r.get('score'))}</td>"
        f"<td>{_area(r.get('defect_area'))}</td>"
        f"<td class=path>{html.escape(r['path'])}</td></tr>" for i, r in enumerate(shown))
    more = (f"<p class=note>… and {len(rows) - len(shown)} more, not listed here: every row is in "
            f"{SCORES_CSV}.</p>" if len(rows) > len(shown) else "")
    return ("<div class=scroll><table><thead><tr><th>#</th><th>verdict</th><th>normalised</th><th>score</th>"
            f"<th>defect area</th><th>path</th></tr></thead><tbody>{body}</tbody></table></div>{more}")


def _section(directory: Path, rows: list[dict[str, Any]], pictures: int, threshold: float | None,
             width: int) -> str:
    figures = "".join(_figure(directory, r, i + 1, threshold, width) for i, r in enumerate(rows[:pictures]))
    rest = rows[pictures:]
    note = ""
    if rest and pictures:
        note = (f"<p class=note>Pictures for the first {pictures} of {len(rows)} (the page's cap, "
                "<code>--max-images</code>); the rest below without pictures.</p>")
    elif rest:
        note = ("<p class=note>No pictures here: the page's cap (<code>--max-images</code>) went to the parts "
                "above.</p>")
    return figures + note + _table(rest, pictures + 1, threshold)


def _failed_html(failed: list[dict[str, Any]], header: dict[str, Any]) -> str:
    parts = []
    if failed:
        shown = failed[:TABLE_ROWS]
        body = "".join(f"<tr><td class=path>{html.escape(r['path'])}</td><td class=path>"
                       f"{html.escape(r.get('error') or '')}</td></tr>" for r in shown)
        left = len(failed) - len(shown)
        more = f"<p class=note>… and {left} more in {SCORES_CSV}.</p>" if left else ""
        parts.append("<div class=scroll><table class=reasons><thead><tr><th>path</th>"
                     f"<th>why it could not be scored</th></tr></thead><tbody>{body}</tbody></table></div>{more}")
    else:
        parts.append("<p>Every input was scored.</p>")
    skipped = int(header.get("ground_truth_skipped") or 0)
    if skipped:
        files = list(header.get("ground_truth_skipped_files") or [])[:SKIPPED_SHOWN]
        unnamed = skipped - len(files)
        items = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in files)
        more = (f"<p class=note>… and {unnamed} more (scores.json names the first "
                f"{len(header.get('ground_truth_skipped_files') or [])}).</p>" if unnamed else "")
        parts.append(f"<h3>Ground-truth files skipped: {skipped}</h3><p class=note>Masks of the MVTec AD and MTSD "
                     "layouts (files under ground_truth/, *_mask.*, MTSD's NAME.png beside NAME.jpg) are left out, "
                     f"not scored.</p><ul>{items}</ul>{more}")
    return "".join(parts)


def predict_report_html(directory: Path, max_images: int = MAX_IMAGES) -> str:
    header, rows = load_predictions(directory)
    threshold = header.get("image_threshold")

    def by_score(r: dict[str, Any]) -> tuple[float, int]:
        value = r.get("normalized_score") if r.get("normalized_score") is not None else r.get("score")
        return -(value if value is not None else float("-inf")), r["index"]

    failed = [r for r in rows if r.get("error")]
    flagged = sorted((r for r in rows if not r.get("error") and r.get("verdict") == "DEFECT"), key=by_score)
    passed = sorted((r for r in rows if not r.get("error") and r.get("verdict") == "OK"), key=by_score)
    unjudged = sorted((r for r in rows if not r.get("error") and r.get("verdict") not in ("DEFECT", "OK")),
                      key=by_score)
    budget = max(0, max_images)
    shown_flagged = min(budget, len(flagged))
    shown_passed = min(budget - shown_flagged, len(passed))
    shown_unjudged = min(budget - shown_flagged - shown_passed, len(unjudged))

    model = ", ".join(f"{k} {html.escape(str(header[k]))}" for k in ("model_name", "class_name", "backend")
                      if header.get(k))
    no_maps = rows and not any(r.get("map") for r in rows if not r.get("error"))
    parts = [
        "<h2 id=summary>What the threshold promises, and what it found</h2>",
        promise_html(header),
        counts_html(header, len(passed), len(unjudged)),
        f"<p class=note>Model {html.escape(str(header.get('checkpoint', '?')))} ({model}); pixel threshold "
        f"{_number(header.get('pixel_threshold'))}. Every row, in input order: {SCORES_CSV}, {SCORES_JSON}.</p>",
        legend_html(header.get("pixel_threshold")),
    ]
    if no_maps:
        parts.append("<p class=note>predict ran with <code>--no-maps</code>: the page lists scores without "
                     "pictures.</p>")
    parts += [f"<h2 id=flagged>Flagged DEFECT: {len(flagged)}</h2>"
              "<p class=note>Highest normalised score first. Each picture: the input, its heatmap over it, and "
              "the colour scale that reads it.</p>",
              _section(directory, flagged, shown_flagged, threshold, FLAGGED_WIDTH) if flagged
              else "<p>No part was flagged.</p>"]
    if passed or threshold is not None:
        open_ = " open" if not flagged else ""
        parts.append(f"<h2 id=passed>Passed OK: {len(passed)}</h2><details{open_}><summary>Show the passed parts, "
                     "closest to the threshold first</summary>"
                     + _section(directory, passed, shown_passed, threshold, PASSED_WIDTH) + "</details>")
    if unjudged:
        parts.append(f"<h2 id=unjudged>Scored without a verdict: {len(unjudged)}</h2><p class=note>Highest score "
                     "first; the model has no calibrated threshold.</p>"
                     + _section(directory, unjudged, shown_unjudged, threshold, PASSED_WIDTH))
    parts += [f"<h2 id=failed>Could not be scored: {len(failed)}</h2>", _failed_html(failed, header)]
    nav = [("summary", "promise and counts"), ("flagged", f"flagged ({len(flagged)})"),
           ("passed", f"passed ({len(passed)})"), ("failed", f"could not be scored ({len(failed)})")]
    title = f"defectscope predictions: {directory.resolve().name}"
    return page(title, f"Predict folder {directory.resolve()}.", nav, "\n".join(parts), css=_CSS)


def build_predict_report(directory: str | Path, output: str | Path | None = None,
                         max_images: int = MAX_IMAGES) -> Path:
    """Write the page of a predict folder (default PREDICT_DIR/report.html); returns its path."""
    directory = Path(directory)
    if not (directory / SCORES_JSON).is_file():
        raise ReportError(f"{directory}: no {SCORES_JSON} (expected a `defectscope predict` output folder)")
    text = predict_report_html(directory, max_images)
    return write_page(Path(output) if output else directory / REPORT_HTML, text)
