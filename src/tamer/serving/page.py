"""The page for people at `/`: the model card (id, task, metrics, lineage, a link to its report) and a form to try
an input and see the prediction with every label's probability. Plain HTML and a little JavaScript, no assets
fetched from anywhere; the API key, when the server needs one, stays in the page's memory."""
from __future__ import annotations


from ..report import page as report_html
from ..report.lineage import LineageReport

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
textarea{width:100%;font:inherit}.muted{color:#777}.bar{background:#4a7;height:.8rem;display:inline-block}
#error{color:#b22}button{font:inherit;padding:.3rem 1rem}"""

_SCRIPT = """
const AUTH = __AUTH__;
const $ = (id) => document.getElementById(id);
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("key") ? $("key").value.trim() : "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function row(table, a, b) { const tr = document.createElement("tr"); tr.append(cell(a), cell(b)); table.append(tr); }
async function loadCard() {
  $("error").textContent = "";
  const r = await fetch("/v1/model", {headers: headers()});
  const body = await r.json();
  if (!r.ok) { $("error").textContent = body.error.message; return null; }
  const t = $("card"); t.replaceChildren();
  row(t, "id", body.id); row(t, "task", body.task + " (" + body.kind + ")"); row(t, "format", body.format);
  for (const [k, v] of Object.entries(body.metrics)) row(t, "test " + k, typeof v === "number" ? v.toFixed(4) : v);
  row(t, "written by", body.lineage.verb || "?"); row(t, "parents", (body.lineage.parents || []).join(", ") || "none");
  $("kind").textContent = body.kind;
  $("hint").textContent = body.task === "digits" ? "64 numbers 0..16 (an 8x8 image, row by row), commas between"
                                                   : "one text per line";
  return body;
}
async function openReport(event) {
  event.preventDefault();
  const r = await fetch("/v1/model/report", {headers: headers()});
  if (!r.ok) { $("error").textContent = (await r.json()).error.message; return; }
  const url = URL.createObjectURL(new Blob([await r.text()], {type: "text/html"}));
  window.open(url, "_blank");
}
function parseInputs(text) {
  if ($("hint").textContent.startsWith("64")) {
    return text.split(/\\n\\s*\\n/).filter(s => s.trim()).map(s => s.split(/[\\s,]+/).filter(x => x).map(Number));
  }
  return text.split("\\n").filter(s => s.trim());
}
async function tryIt(event) {
  event.preventDefault();
  $("error").textContent = ""; $("result").replaceChildren();
  const r = await fetch("/v1/predict", {method: "POST", headers: headers(),
                                        body: JSON.stringify({inputs: parseInputs($("input").value)})});
  const body = await r.json();
  if (!r.ok) { $("error").textContent = body.error.message; return; }
  for (const p of body.predictions) {
    const box = document.createElement("div"); box.className = "prediction";
    const head = document.createElement("h3");
    head.textContent = p.generated_text != null ? p.generated_text : p.label + " (" + p.score.toFixed(4) + ")";
    box.append(head);
    if (p.probabilities) {
      const t = document.createElement("table");
      for (const [label, v] of Object.entries(p.probabilities).sort((a, b) => b[1] - a[1])) {
        const tr = document.createElement("tr"); tr.className = "probability";
        const bar = cell(""); const span = document.createElement("span"); span.className = "bar";
        span.style.width = (v * 12) + "rem"; bar.append(span);
        tr.append(cell(label), cell(v.toFixed(4)), bar); t.append(tr);
      }
      box.append(t);
    }
    $("result").append(box);
  }
}
window.addEventListener("DOMContentLoaded", () => {
  $("try").addEventListener("submit", tryIt);
  $("report").addEventListener("click", openReport);
  if ($("load")) $("load").addEventListener("click", loadCard);
  if (!AUTH) loadCard();
});
"""


def model_page(auth: bool) -> str:
    """The page; with `auth`, a key field first (the card and predictions need it)."""
    key = ("<p><label>API key <input id=key type=password autocomplete=off size=50></label> "
           "<button id=load type=button>Show the model</button></p>") if auth else ""
    script = _SCRIPT.replace("__AUTH__", "true" if auth else "false")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>tamer serve</title>"
            f"<style>{_STYLE}</style></head><body><h1>tamer serve</h1>{key}"
            f"<h2>Model</h2><table id=card></table><p><a id=report href=/v1/model/report>its report</a> · "
            f"<a href=/docs>API docs</a> · <span id=kind class=muted></span></p>"
            f"<h2>Try it</h2><form id=try><p class=muted id=hint></p><textarea id=input rows=5></textarea>"
            f"<p><button id=submit type=submit>Predict</button></p></form><p id=error></p><div id=result></div>"
            f"<script>{script}</script></body></html>")


def report_page(artifact) -> str:
    """The artifact's lineage section (what its manifest records) as a page of its own."""
    section = LineageReport.from_artifact(artifact)
    return report_html([section.html()], f"artifact {artifact.id}", section.summary())
