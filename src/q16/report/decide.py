"""Decisions taken on the page itself: keep / remove / unsure and a note per flagged image,
saved as a review sheet that ``q16 apply`` reads.

The page opens from disk (``file://``), with no server and no network: the sheet is built in
the browser and saved through a ``Blob`` and an ``<a download>`` link. Nothing from the dataset
is ever code: the one script is this module's constant, allowed by its hash in the page's
Content-Security-Policy (any other script, inline handler or remote resource is refused by
the browser); each image's exact shard, key and shard version travel as JSON (ASCII, escaped
for an attribute) in a ``data-image`` attribute and are only ever read as text. The sheet the
script writes follows ``q16.spreadsheet``'s rules: cells a spreadsheet would run as a formula
get a leading quote, every cell is quoted, lines end in CRLF.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

SAVED_NAME = "review_page.csv"
"""What the browser saves (a ``review*.csv`` name: ``q16 next`` counts its decisions)."""

SCRIPT = """
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll(".item[data-image]"));
  var progress = document.getElementById("review-progress");
  var unsaved = false;
  var FORMULA = /^[=+\\-@\\t\\r']/;
  function update() {
    var done = items.filter(function (item) { return item.dataset.decision; }).length;
    progress.textContent = done + " of " + items.length + " decided";
  }
  function choose(item, choice) {
    item.dataset.decision = item.dataset.decision === choice ? "" : choice;
    item.querySelectorAll("button[data-choice]").forEach(function (button) {
      var on = button.dataset.choice === item.dataset.decision;
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
    unsaved = true;
    update();
  }
  items.forEach(function (item) {
    item.querySelectorAll("button[data-choice]").forEach(function (button) {
      button.addEventListener("click", function () { choose(item, button.dataset.choice); });
    });
    item.querySelector("input.note-input").addEventListener("input", function () {
      unsaved = true;
    });
  });
  function cell(text) {
    text = String(text);
    if (FORMULA.test(text)) { text = "'" + text; }
    return '"' + text.replace(/"/g, '""') + '"';
  }
  function sheet() {
    var lines = ["decision,shard,key,note,shard_version"];
    items.forEach(function (item) {
      var image = JSON.parse(item.dataset.image);
      var note = item.querySelector("input.note-input").value;
      lines.push([item.dataset.decision || "", image[0], image[1], note, image[2]]
        .map(cell).join(","));
    });
    return lines.join("\\r\\n") + "\\r\\n";
  }
  document.getElementById("review-save").addEventListener("click", function () {
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([sheet()], {type: "text/csv;charset=utf-8"}));
    link.download = document.getElementById("review-save").dataset.file;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
    unsaved = false;
  });
  window.addEventListener("beforeunload", function (event) {
    if (unsaved) { event.preventDefault(); event.returnValue = ""; }
  });
  update();
})();
"""

CSS = """
#review-bar{position:sticky;top:0;z-index:1;background:#fffbe6;border:1px solid #e0c96b;
border-radius:6px;padding:8px 12px;margin:8px 0;display:flex;gap:12px;align-items:center;
flex-wrap:wrap}
.decide{display:flex;gap:4px;margin:6px 0 4px}.decide button{flex:1;cursor:pointer;
border:1px solid #bbb;background:#f4f4f4;border-radius:4px;padding:3px 0}
.decide button[aria-pressed=true]{color:#fff;border-color:#333;background:#333}
.item[data-decision=remove]{border:2px solid #c0392b}
.item[data-decision=keep]{border:2px solid #2e7d32}
.item[data-decision=unsure]{border:2px dashed #b7950b}
.note-input{width:100%;box-sizing:border-box}
"""


def content_security_policy() -> str:
    """Only this module's script runs; images only from data: URIs; nothing is fetched."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def csp_meta() -> str:
    return f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">'


def image_attribute(shard: str, key: str, version: str) -> str:
    """``data-image``: the exact shard, key and version as JSON, escaped for an attribute."""
    text = json.dumps([str(shard), str(key), str(version)], ensure_ascii=True)
    return f'data-image="{html.escape(text, quote=True)}"'


def controls() -> str:
    """Per image: three decision buttons and a note field."""
    buttons = "".join(
        f'<button type="button" data-choice="{c}" aria-pressed="false">{c}</button>'
        for c in ("keep", "remove", "unsure")
    )
    return (
        f'<div class="decide" role="group" aria-label="decision">{buttons}</div>'
        '<input class="note-input" type="text" placeholder="note" aria-label="note">'
    )


def toolbar(shown: int, total: int) -> str:
    """Progress, the save button and how the saved sheet is applied."""
    rest = (
        f" The page holds the top {shown:,} of {total:,}; the others are in review.csv."
        if shown < total
        else ""
    )
    return (
        f'<div id="review-bar"><strong id="review-progress">0 of {shown:,} decided</strong>'
        f'<button type="button" id="review-save" data-file="{SAVED_NAME}">Save decisions as '
        f'{SAVED_NAME}</button><span class="note">Decide with the buttons under each image '
        "(click again to clear); decisions live in this page until saved. Apply the saved "
        f"sheet with <code>q16 apply OUT {SAVED_NAME}</code>.{rest}</span>"
        "<noscript>Scripts are off: decide in review.csv instead.</noscript></div>"
    )


def script_tag() -> str:
    return f"<script>{SCRIPT}</script>"
