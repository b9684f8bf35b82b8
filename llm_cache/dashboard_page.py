"""The dashboard's page from its data (llm_cache.dashboard.document): HTML with charts drawn as
inline SVG, here, on the server. No script and nothing fetched: it works offline, and every string
from the cache (a model, a host) is escaped, so a model named like markup stays text."""

from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 720, 180  # the daily chart's plot area, in SVG units
BAR_ROW = 22  # height of one model's bar


def page(data: dict[str, Any]) -> str:
    window, counted = data["window"], data["counted"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llm-cache</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>llm-cache</h1>
<p class="muted">{_t(data["database"])} · {data["entries"]:,} entries · {_t(data["generated_at"])}</p>
<section class="tiles">
{_tile("hit_rate", _percent(window["hit_rate"]), f"hit rate, last {window['days']} days")}
{_tile("hits", f"{window['hits']:,}", "hits")}
{_tile("misses", f"{window['misses']:,}", "misses (went upstream)")}
{_tile("hit_rate_all", _percent(counted["hit_rate"]),
       f"hit rate since counting began ({counted['hits']:,} hits, {counted['misses']:,} misses)")}
</section>
<h2>Hits and misses per day (UTC)</h2>
{daily_chart(data["days"])}
<h2>Saved per model</h2>
{models_chart(data["models"])}
{models_table(data["models"], data.get("prices"))}
<h2>Recent entries</h2>
{recent_table(data["recent"])}
<h2>The writer, this run</h2>
{writes_list(data["writes"])}
<p class="muted">The same as JSON: <a href="/api/stats.json">/api/stats.json</a></p>
</body></html>
"""


def daily_chart(days: Sequence[dict[str, Any]]) -> str:
    """Stacked bars, hits over misses, one per day; each with a tooltip of its numbers."""
    top = max((d["hits"] + d["misses"] for d in days), default=0) or 1
    step = WIDTH / max(len(days), 1)
    bars = []
    for at, d in enumerate(days):
        x = at * step + 1
        hits_h, misses_h = HEIGHT * d["hits"] / top, HEIGHT * d["misses"] / top
        tip = f"{d['day']}: {d['hits']:,} hits, {d['misses']:,} misses"
        bars.append(f'<g><title>{_t(tip)}</title>'
                    f'<rect class="misses" x="{x:.1f}" y="{HEIGHT - misses_h:.1f}" width="{step - 2:.1f}" '
                    f'height="{misses_h:.1f}"/>'
                    f'<rect class="hits" x="{x:.1f}" y="{HEIGHT - misses_h - hits_h:.1f}" width="{step - 2:.1f}" '
                    f'height="{hits_h:.1f}"/></g>')
    labels = "".join(f'<text x="{at * step + step / 2:.1f}" y="{HEIGHT + 16}" text-anchor="middle">'
                     f'{_t(days[at]["day"][5:])}</text>' for at in _label_positions(len(days)))
    return (f'<svg class="chart" viewBox="-40 -10 {WIDTH + 50} {HEIGHT + 40}" role="img" '
            f'aria-label="hits and misses per day">'
            f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>'
            f'<text x="-6" y="4" text-anchor="end">{top:,}</text><text x="-6" y="{HEIGHT}" text-anchor="end">0</text>'
            f'{"".join(bars)}{labels}</svg>'
            '<p class="legend"><span class="key hits"></span> hits <span class="key misses"></span> misses</p>')


def _label_positions(count: int) -> list[int]:
    return sorted({0, count // 2, count - 1}) if count else []


def models_chart(models: Sequence[dict[str, Any]]) -> str:
    """Tokens each model's hits saved: input and output, as horizontal bars."""
    shown = [m for m in models if m["input_tokens_saved"] + m["output_tokens_saved"]]
    if not shown:
        return '<p class="muted">No tokens saved yet.</p>'
    top = max(m["input_tokens_saved"] + m["output_tokens_saved"] for m in shown)
    label, room = 220, WIDTH - 220 - 110
    rows = []
    for at, m in enumerate(shown):
        y = at * BAR_ROW
        total = m["input_tokens_saved"] + m["output_tokens_saved"]
        wide_in, wide_out = room * m["input_tokens_saved"] / top, room * m["output_tokens_saved"] / top
        rows.append(f'<g><title>{_t(m["model"])}: {m["input_tokens_saved"]:,} input and '
                    f'{m["output_tokens_saved"]:,} output tokens saved</title>'
                    f'<text x="{label - 8}" y="{y + 15}" text-anchor="end">{_t(_short(m["model"]))}</text>'
                    f'<rect class="input" x="{label}" y="{y + 3}" width="{wide_in:.1f}" height="{BAR_ROW - 6}"/>'
                    f'<rect class="output" x="{label + wide_in:.1f}" y="{y + 3}" width="{wide_out:.1f}" '
                    f'height="{BAR_ROW - 6}"/>'
                    f'<text x="{label + wide_in + wide_out + 6:.1f}" y="{y + 15}">{total:,}</text></g>')
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {len(shown) * BAR_ROW}" role="img" '
            f'aria-label="tokens saved per model">{"".join(rows)}</svg>'
            '<p class="legend"><span class="key input"></span> input tokens '
            '<span class="key output"></span> output tokens</p>')


def models_table(models: Sequence[dict[str, Any]], prices: str | None) -> str:
    if not models:
        return '<p class="muted">No entries yet.</p>'
    rows = "".join(f'<tr><td>{_t(m["model"])}</td><td>{m["entries"]:,}</td><td>{m["hits"]:,}</td>'
                   f'<td>{m["input_tokens_saved"]:,}</td><td>{m["output_tokens_saved"]:,}</td>'
                   f'<td>{_t(money(m["money_saved_usd"], m["unpriced_hits"]))}</td></tr>' for m in models)
    note = f'<p class="muted">Prices: {_t(prices)}, no network.</p>' if prices else ""
    return (f'<table><tr><th>model</th><th>entries</th><th>hits</th><th>input tokens saved</th>'
            f'<th>output tokens saved</th><th>money saved</th></tr>{rows}</table>{note}')


def recent_table(recent: Sequence[dict[str, Any]]) -> str:
    if not recent:
        return '<p class="muted">No entries yet.</p>'
    rows = "".join(f'<tr><td><code>{_t(e["key"])}</code></td><td>{_t(e["created_at"])}</td><td>{_t(e["model"])}</td>'
                   f'<td>{_t(e["host"])}</td><td>{_t(e["family"])}</td><td>{e["hits"]:,}</td>'
                   f'<td>{_t(e["format"])}</td></tr>' for e in recent)
    return ('<table><tr><th>key</th><th>recorded</th><th>model</th><th>host</th><th>family</th><th>hits</th>'
            f'<th>as</th></tr>{rows}</table>')


def writes_list(writes: dict[str, Any]) -> str:
    causes = "".join(f"<li>lost: {count:,} ({_t(cause)})</li>" for cause, count in writes["lost_by_cause"].items())
    retrying = f"<li>retrying: {_t(writes['retrying'])}</li>" if writes["retrying"] else ""
    return (f'<ul><li><b data-stat="stored">{writes["stored"]:,}</b> entries stored</li>'
            f'<li><b data-stat="lost">{writes["lost"]:,}</b> lost</li>{causes}'
            f'<li><b data-stat="waiting">{writes["waiting"]:,}</b> waiting to be written</li>{retrying}</ul>')


def money(usd: float | None, unpriced_hits: int) -> str:
    """Dollars as `scripts/llm-cache stats` shows them; `unknown` when no hit could be priced."""
    if usd is None:
        return "unknown"
    shown = f"${usd:,.2f}" if usd >= 1 else (f"${usd:.6f}".rstrip("0").rstrip(".") if usd else "$0")
    return shown + (" + unknown" if unpriced_hits else "")


def _tile(stat: str, value: str, label: str) -> str:
    return f'<div class="tile"><b data-stat="{stat}">{_t(value)}</b><span>{_t(label)}</span></div>'


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _short(text: str, most: int = 30) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def _t(value: Any) -> str:
    return escape(str(value), quote=True)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{margin-top:1.6em;font-size:1.1em}
.muted{color:#777}
.tiles{display:flex;gap:1em;flex-wrap:wrap}
.tile{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.tile b{display:block;font-size:1.6em}.tile span{color:#666;font-size:.9em}
svg.chart{width:100%;height:auto;font-size:11px;fill:#555}
.axis{stroke:#999}
rect.hits,.key.hits{fill:#2e9d5b;background:#2e9d5b}
rect.misses,.key.misses{fill:#e0a030;background:#e0a030}
rect.input,.key.input{fill:#3b7dd8;background:#3b7dd8}
rect.output,.key.output{fill:#9b59b6;background:#9b59b6}
.key{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-left:.8em}
.legend{color:#555;font-size:.9em;margin-top:0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eee}
td:nth-child(n+2){font-variant-numeric:tabular-nums}
"""
