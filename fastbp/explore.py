"""The report's page to work in: every setting in a table to sort and filter, each with
its runs, and the settings as parallel coordinates to brush.

The data travel in the page as compact JSON, by column: a field's values as indices into
its distinct texts, numbers to 6 significant digits, the runs grouped by setting in the
settings' order (so that a setting's seed count says where its runs are). The code is one
inline script. The page fetches nothing, and 50,000 runs take a few MB.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fastbp import ranking
from fastbp.layout import fmt, is_numeric, label, log_spaced, sort_key

ROWS = 300  # table rows drawn at once; sorting and filtering reach the rest
LINES = 2000  # settings drawn as lines: spread evenly over the order shown, the best on top
DIGITS = 6  # significant digits of the numbers sent (the table shows 3 or 4)
# the statistic that ranks the settings, on the last axis of the parallel coordinates
STATISTIC = {"success": "share", "val_accuracy": "median_val_accuracy",
             "accuracy": "median_accuracy", "val_loss": "median_val_loss"}  # fmt: skip
MEDIANS = {"median_loss": "median final loss", "median_accuracy": "median accuracy",
           "median_val_loss": "median held-out loss",
           "median_val_accuracy": "median held-out accuracy"}  # fmt: skip
RUN_COLUMNS = {"seed": "seed", "final_loss": "final loss", "accuracy": "accuracy",
               "val_loss": "held-out loss", "val_accuracy": "held-out accuracy",
               "steps_to_threshold": "steps to threshold", "diverged_at": "diverged at",
               "stopped_at": "stopped at"}  # fmt: skip


def section(runs: pd.DataFrame, order, threshold, ranked: pd.DataFrame) -> str:
    """The page's "Explore" section for ``runs`` and their settings ``ranked`` (as
    fastbp.ranking.settings made them, best first)."""
    fields = ranking.setting_fields(runs, order)
    columns = [_field(ranked, f) for f in fields]
    columns.append({"name": "seeds", "num": _ints(ranked["runs"]), "digits": 0})
    columns.append({"name": "diverged", "num": _ints(ranked["diverged"]), "digits": 0})
    for column, name in MEDIANS.items():
        if column in ranked:
            percent = column.endswith("accuracy")
            columns.append({"name": name, "num": _numbers(ranked[column]), "digits": 4,
                            "percent": percent, "none": "diverged"})  # fmt: skip
    if (ranked["runs"] > 1).any():
        quartiles = [_numbers(ranked["loss_q25"]), _numbers(ranked["loss_q75"])]
        columns.append({"name": "final loss, middle half of seeds", "none": "diverged",
                        "range": quartiles})  # fmt: skip
    if "reached" in ranked:
        low, high = (np.round(100 * ranked[c].to_numpy(float)).astype(int).tolist()
                     for c in ("share_low", "share_high"))  # fmt: skip
        columns.append({"name": "reached the threshold (95% interval)",
                        "success": [_ints(ranked["reached"]), low, high]})  # fmt: skip
    columns.append({"name": "median seed's run", "median": True})
    statistic = STATISTIC.get(ranking.basis(runs, threshold), "median_loss")
    shown = [statistic] + ["median_loss"] * (statistic != "median_loss")
    data = {
        "columns": columns,
        "runs": _runs(runs, order, threshold, ranked),
        "axes": [{"column": j} for j in range(len(fields))]
        + [_statistic_axis(ranked, column) for column in shown],
        "limits": {"rows": ROWS, "lines": LINES},
    }
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (
        "<h2 id='explore'>Explore the settings</h2>"
        "<p class='note'>Every setting, best first by the rule above. Click a heading to "
        "sort by it (again to reverse); type words to keep the settings whose row holds "
        "all of them (<code>adam 0.01</code>); click a setting to see its runs. Below, each "
        "setting is a line through its fields and its statistic, the best darkest; drag "
        "along an axis to keep the settings in that range (a click on the axis clears "
        "it). The filter and the ranges act on the table and the lines alike.</p>"
        "<div class='fb-bar'><input id='fb-filter' type='search' "
        "placeholder='filter the settings' aria-label='filter the settings'> "
        "<span id='fb-count' class='note'></span></div>"
        "<div class='scroll fb-table'><table id='fb-table'></table></div>"
        "<svg id='fb-lines' role='img' aria-label='the settings as parallel coordinates'>"
        "</svg>"
        f"<script type='application/json' id='fb-data'>{payload}</script>"
        f"<script>{SCRIPT}</script>"
    )


STYLE = """
.fb-bar { margin: 0.5em 0; } #fb-filter { font: inherit; padding: 3px 6px; width: 16em; }
.fb-table { max-height: 34em; overflow-y: auto; border: 1px solid #e4e4e4; }
.fb-table th { position: sticky; top: 0; cursor: pointer; user-select: none; }
#fb-table tr.fb-s { cursor: pointer; } #fb-table tr.fb-s:hover td { background: #f0f6ff; }
#fb-table tr.fb-open td { background: #e8f0fb; } #fb-table table { margin: 0.3em 0 0.6em; }
#fb-lines { display: block; width: 100%; height: 340px; margin-top: 1em; }
#fb-lines text { font: 12px system-ui, sans-serif; fill: #333; }
"""


def _statistic_axis(ranked, column) -> dict:
    """An axis of the parallel coordinates for a statistic of the settings."""
    values = ranked[column].to_numpy(float)
    return {
        "name": {"share": "share that reached the threshold"}.get(column, MEDIANS.get(column)),
        "values": _numbers(values),
        "log": column.endswith("loss") and bool((values[np.isfinite(values)] > 0).all()),
        "percent": column == "share" or column.endswith("accuracy"),
    }


def _field(table: pd.DataFrame, field: str) -> dict:
    """A field's column: the distinct texts in order of value (missing last), each
    setting's index into them and, for a numeric field, each text's number."""
    keys = [ranking.hashable(v) for v in table[field]]
    present = sorted({k for k in keys if k is not None}, key=lambda v: sort_key(field, v))
    distinct = [*present, None] if None in keys else present
    index = {v: k for k, v in enumerate(distinct)}
    column = {"name": label(field), "short": field,
              "labels": [fmt(field, list(v) if isinstance(v, tuple) else v) for v in distinct],
              "codes": [index[k] for k in keys]}  # fmt: skip
    if is_numeric(table[field]) and present:
        numbers = np.array([np.nan if v is None else float(v) for v in distinct])
        column["numbers"] = _numbers(numbers)
        column["log"] = bool(log_spaced(numbers))
    return column


def _runs(runs, order, threshold, ranked) -> dict:
    """The runs grouped by setting in the settings' order, each setting's best first by
    the rule's quantity (ties by run_id), so that its median seed is at (n - 1) // 2."""
    codes = ranking.setting_codes(runs, ranking.setting_fields(runs, order))
    median_at = pd.Index(runs["run_id"]).get_indexer(ranked["median_run"])
    position = np.empty(codes.max() + 1, dtype=int)
    position[codes[median_at]] = np.arange(len(ranked))
    badness = ranking.run_order(runs, threshold)
    ids = runs["run_id"].to_numpy(str)
    shown = runs.iloc[np.lexsort((ids, badness, position[codes]))]
    columns = []
    for column, name in RUN_COLUMNS.items():
        if column not in shown or shown[column].isna().all():
            continue
        if column == "steps_to_threshold" and threshold is None:
            continue
        values = shown[column]
        if column == "final_loss":
            values = values.where(~shown["diverged"].to_numpy(bool))
        integer = column in ("seed", "steps_to_threshold", "diverged_at", "stopped_at")
        columns.append({"name": name, "num": _numbers(values), "digits": 0 if integer else 4,
                        "percent": column.endswith("accuracy"),
                        "none": "diverged" if column == "final_loss" else ""})  # fmt: skip
    return {"id": shown["run_id"].tolist(), "columns": columns}


def _numbers(values) -> list:
    """Numbers to DIGITS significant digits, None where missing or not finite."""
    x = pd.Series(values).astype(float).to_numpy()
    ok = np.isfinite(x)
    out = np.full(len(x), None, dtype=object)
    out[ok] = [float(f"{v:.{DIGITS}g}") for v in x[ok]]
    return out.tolist()


def _ints(values) -> list:
    return [int(v) for v in values]


SCRIPT = r"""
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('fb-data').textContent);
  var C = D.columns, R = D.runs, n = C[0].codes ? C[0].codes.length : C[0].num.length;
  var table = document.getElementById('fb-table'), box = document.getElementById('fb-filter');
  var count = document.getElementById('fb-count'), svg = document.getElementById('fb-lines');
  var seeds = C.filter(function (c) { return c.name === 'seeds'; })[0].num;
  var start = [0];  // a setting's runs: R from start[i], seeds[i] of them
  for (var i = 0; i < n; i++) start.push(start[i] + seeds[i]);
  var order = [], by = -1, up = true, open = {}, text = null, ranges = {};
  var runBy = -1, runUp = true;  // the runs: best first by the rule, until sorted
  for (i = 0; i < n; i++) order.push(i);

  function g(v, d, percent, none) {  // Python's '{:.4g}' (and '{:.1%}')
    if (v === null || v === undefined) return none || '';
    if (percent) return (100 * v).toFixed(1) + '%';
    if (d === 0) return Math.abs(v) >= 10000 ? v.toLocaleString('en') : String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-4 || a >= Math.pow(10, d))) {
      var e = v.toExponential(d - 1).split('e'), m = e[0];
      if (m.indexOf('.') >= 0) m = m.replace(/0+$/, '').replace(/\.$/, '');
      var p = +e[1];
      return m + 'e' + (p < 0 ? '-' : '+') + (Math.abs(p) < 10 ? '0' : '') + Math.abs(p);
    }
    return String(parseFloat(v.toPrecision(d)));
  }
  function cell(c, i) {
    if (c.labels) return c.labels[c.codes[i]];
    if (c.num) return g(c.num[i], c.digits, c.percent, c.none);
    if (c.range) {
      var lo = c.range[0][i], hi = c.range[1][i];
      if (hi === null) return lo === null ? c.none : g(lo, 4) + '–' + c.none;
      return g(lo, 4) + '–' + g(hi, 4);
    }
    if (c.success) return c.success[0][i] + ' of ' + seeds[i] + ' (95%: ' + c.success[1][i] +
      '-' + c.success[2][i] + '%)';
    return R.id[start[i] + Math.floor((seeds[i] - 1) / 2)];
  }
  function key(c, i) {  // smaller first; null last
    if (c.labels) return c.codes[i];
    if (c.num) return c.num[i];
    if (c.range) return c.range[1][i] === null ? null : c.range[1][i] - c.range[0][i];
    if (c.success) return c.success[1][i] + c.success[0][i] / seeds[i] / 1000;
    return cell(c, i);
  }
  function sortBy(j) {
    up = j === by ? !up : true; by = j;
    var k = [];
    for (var i = 0; i < n; i++) k.push(key(C[j], i));
    order.sort(function (a, b) {
      var x = k[a], y = k[b];
      if (x === y) return a - b;
      if (x === null) return 1; if (y === null) return -1;
      return (x < y ? -1 : 1) * (up ? 1 : -1);
    });
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (ch) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[ch]; });
  }
  var AX = D.axes.map(function (d) {  // each axis: a field's column, or a statistic
    if (d.column === undefined) return {name: d.name, log: d.log, percent: d.percent,
      numbers: null, labels: null, value: function (i) { return d.values[i]; }, all: d.values};
    var c = C[d.column];
    return {name: c.short, log: !!c.log, percent: false, numbers: c.numbers || null,
      labels: c.numbers ? null : c.labels, all: c.numbers || c.labels.map(function (_, k) {
        return k; }),
      value: function (i) { return c.numbers ? c.numbers[c.codes[i]] : c.codes[i]; }};
  });
  function keep(i) {
    for (var k in ranges) {
      var v = AX[k].value(i), r = ranges[k];
      if (v === null || v < r[0] || v > r[1]) return false;
    }
    return true;
  }
  function shown() {
    var words = box.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length && !text) {
      text = [];
      for (var i = 0; i < n; i++)
        text.push(C.map(function (c) { return cell(c, i); }).join(' ').toLowerCase());
    }
    return order.filter(function (i) {
      for (var w = 0; w < words.length; w++) if (text[i].indexOf(words[w]) < 0) return false;
      return keep(i);
    });
  }
  function runsHtml(i) {
    var ks = [];
    for (var k = start[i]; k < start[i + 1]; k++) ks.push(k);
    if (runBy >= 0) {
      var c = R.columns[runBy];
      ks.sort(function (a, b) {
        var x = c.num[a], y = c.num[b];
        if (x === y) return a - b;
        if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * (runUp ? 1 : -1);
      });
    }
    var more = ks.length > 500 ? '<p class="note">the first 500 of ' + ks.length + '</p>' : '';
    var h = '<table><tr><th>run_id</th>' + R.columns.map(function (c, j) {
      return '<th data-r="' + j + '">' + esc(c.name) +
        (j === runBy ? (runUp ? ' ▲' : ' ▼') : '') + '</th>'; }).join('') + '</tr>';
    ks.slice(0, 500).forEach(function (k) {
      h += '<tr><td>' + esc(R.id[k]) + '</td>' + R.columns.map(function (c) {
        return '<td>' + esc(g(c.num[k], c.digits, c.percent, c.none)) + '</td>'; }).join('') +
        '</tr>';
    });
    return h + '</table>' + more;
  }
  function draw() {
    var rows = shown(), m = C.length;
    var h = '<tr>' + C.map(function (c, j) {
      return '<th data-j="' + j + '" title="sort">' + esc(c.name) +
        (j === by ? (up ? ' ▲' : ' ▼') : '') + '</th>'; }).join('') + '</tr>';
    rows.slice(0, D.limits.rows).forEach(function (i) {
      h += '<tr class="fb-s' + (open[i] ? ' fb-open' : '') + '" data-i="' + i + '">' +
        C.map(function (c) { return '<td>' + esc(cell(c, i)) + '</td>'; }).join('') + '</tr>';
      if (open[i]) h += '<tr><td colspan="' + m + '">' + runsHtml(i) + '</td></tr>';
    });
    table.innerHTML = h;
    count.textContent = rows.length.toLocaleString('en') + ' of ' + n.toLocaleString('en') +
      ' settings' + (rows.length > D.limits.rows ? ', the first ' + D.limits.rows +
      ' in the table' : '') + (rows.length > D.limits.lines ? ', ' + D.limits.lines +
      ' of them as lines, spread over the order' : '');
    lines(rows);
  }
  var scales = [];
  function lines(rows) {
    var W = Math.max(svg.clientWidth || 0, 320), H = 340, top = 34, bottom = H - 46;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    scales = AX.map(function (ax, k) {
      var f = ax.log ? Math.log : function (u) { return u; };
      var v = ax.all.filter(function (u) { return u !== null && (!ax.log || u > 0); }).map(f);
      var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
      if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
      return {
        x: 60 + k * (W - 150) / Math.max(1, AX.length - 1),
        y: function (u) { return u === null || (ax.log && u <= 0) ? top - 14 :
          bottom - (f(u) - lo) / (hi - lo) * (bottom - top); },
        inv: function (py) { var t = lo + (bottom - py) / (bottom - top) * (hi - lo);
          return ax.log ? Math.exp(t) : t; }};
    });
    // at most D.limits.lines lines, spread evenly over the rows shown; the best on top
    var step = Math.max(1, rows.length / D.limits.lines), pick = [], parts = [];
    for (var p = 0; p < rows.length && pick.length < D.limits.lines; p += step)
      pick.push(rows[Math.floor(p)]);
    pick.sort(function (a, b) { return b - a; });
    var last = Math.max(1, n - 1);
    pick.forEach(function (i) {
      var shade = Math.round(20 + 200 * Math.sqrt(i / last));
      var pts = AX.map(function (ax, k) {
        return scales[k].x.toFixed(1) + ',' + scales[k].y(ax.value(i)).toFixed(1); });
      parts.push('<polyline fill="none" stroke="rgb(' + shade + ',' + shade + ',' +
        Math.min(255, shade + 40) + ')" stroke-opacity="0.55" points="' + pts.join(' ') + '"/>');
    });
    AX.forEach(function (ax, k) {
      var s = scales[k], ticks = [];
      var anchor = k === 0 ? 'start' : k === AX.length - 1 ? 'end' : 'middle';
      parts.push('<line x1="' + s.x + '" x2="' + s.x + '" y1="' + top + '" y2="' + bottom +
        '" stroke="#777"/><text x="' + s.x + '" y="' + (bottom + 20 + 14 * (k % 2)) +
        '" text-anchor="' + anchor + '">' + esc(ax.name) + '</text>');
      if (ax.labels) {
        if (ax.labels.length <= 12) ax.labels.forEach(function (t, q) { ticks.push([q, t]); });
      } else if (ax.numbers && ax.numbers.length <= 8) {  // a grid's values: each
        ax.numbers.forEach(function (u) { if (u !== null) ticks.push([u, g(u, 3)]); });
      } else {
        var vals = ax.all.filter(function (u) { return u !== null; });
        var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
        ticks.push([lo, g(lo, 3, ax.percent)]);
        if (hi !== lo) ticks.push([hi, g(hi, 3, ax.percent)]);
      }
      ticks.forEach(function (t) {
        parts.push('<text x="' + (s.x + 5) + '" y="' + (s.y(t[0]) + 4).toFixed(1) + '">' +
          esc(t[1]) + '</text>');
      });
      var r = ranges[k];
      if (r) {
        var y0 = s.y(r[1]), y1 = s.y(r[0]);
        parts.push('<rect x="' + (s.x - 7) + '" y="' + Math.min(y0, y1) + '" width="14" ' +
          'height="' + Math.max(2, Math.abs(y1 - y0)) + '" fill="#0072B2" fill-opacity="0.25" ' +
          'stroke="#0072B2"/>');
      }
      parts.push('<rect class="fb-axis" data-k="' + k + '" x="' + (s.x - 12) + '" y="' +
        (top - 16) + '" width="24" height="' + (bottom - top + 16) +
        '" fill="transparent" style="cursor:ns-resize"/>');
    });
    svg.innerHTML = parts.join('');
  }
  function point(e) {
    var box = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
    return (e.clientY - box.top) * vb.height / box.height;
  }
  var drag = null;
  svg.addEventListener('mousedown', function (e) {
    var t = e.target.closest('.fb-axis');
    if (!t) return;
    drag = {k: +t.dataset.k, y0: point(e)};
    e.preventDefault();
  });
  window.addEventListener('mouseup', function (e) {
    if (!drag) return;
    var k = drag.k, y1 = point(e), s = scales[k];
    if (Math.abs(y1 - drag.y0) < 3) delete ranges[k];
    else ranges[k] = [s.inv(drag.y0), s.inv(y1)].sort(function (p, q) { return p - q; });
    drag = null; draw();
  });
  table.addEventListener('click', function (e) {
    var th = e.target.closest('th[data-j]'), rh = e.target.closest('th[data-r]');
    var tr = e.target.closest('tr[data-i]');
    if (th) { sortBy(+th.dataset.j); draw(); }
    else if (rh) { var j = +rh.dataset.r; runUp = j === runBy ? !runUp : true; runBy = j;
      draw(); }
    else if (tr) { var i = +tr.dataset.i; open[i] = !open[i]; draw(); }
  });
  box.addEventListener('input', draw);
  window.addEventListener('resize', function () { lines(shown()); });
  draw();
  count.dataset.ready = Math.round(performance.now());  // ms from the page's start
})();
"""
