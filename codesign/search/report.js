// codesign report: interactive plots drawn as inline SVG from the JSON in #report-data (no libraries, no network).
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var W = 760, H = 420, M = {l: 64, r: 16, t: 16, b: 46};
  var COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

  function el(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    var a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    return String(+v.toPrecision(4));
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
  }
  function table(rows, cols) {
    var h = "<table><thead><tr>" + cols.map(function (c) { return "<th>" + esc(c) + "</th>"; }).join("") + "</tr></thead><tbody>";
    rows.forEach(function (r) {
      h += "<tr>" + cols.map(function (c) { return "<td>" + esc(fmt(r[c])) + "</td>"; }).join("") + "</tr>";
    });
    return h + "</tbody></table>";
  }

  // An axis-scaled plot: returns {x(v), y(v)} mapping data to SVG coordinates, with ticks and labels drawn.
  function axes(svg, xs, ys, xlabel, ylabel, xlog) {
    var xlo = Math.min.apply(null, xs), xhi = Math.max.apply(null, xs);
    var ylo = Math.min.apply(null, ys), yhi = Math.max.apply(null, ys);
    xlog = xlog && xlo > 0;
    if (xlog) { xlo = Math.log10(xlo); xhi = Math.log10(xhi); }
    var xpad = (xhi - xlo) * 0.06 || 0.5, ypad = (yhi - ylo) * 0.08 || 0.01;
    xlo -= xpad; xhi += xpad; ylo -= ypad; yhi += ypad;
    var x = function (v) { var u = xlog ? Math.log10(v) : v; return M.l + (u - xlo) / (xhi - xlo) * (W - M.l - M.r); };
    var y = function (v) { return H - M.b - (v - ylo) / (yhi - ylo) * (H - M.t - M.b); };
    el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "#fff", stroke: "#999"}, svg);
    var g = el("g", {"class": "ticks", "font-size": 11, fill: "#444"}, svg);
    linTicks(ylo, yhi).forEach(function (v) {
      el("line", {x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), stroke: "#eee"}, g);
      el("text", {x: M.l - 6, y: y(v) + 4, "text-anchor": "end"}, g, fmt(v));
    });
    (xlog ? logTicks(xlo, xhi) : linTicks(xlo, xhi)).forEach(function (v) {
      var px = xlog ? x(Math.pow(10, v)) : x(v);
      el("line", {x1: px, x2: px, y1: M.t, y2: H - M.b, stroke: "#eee"}, g);
      el("text", {x: px, y: H - M.b + 16, "text-anchor": "middle"}, g, fmt(xlog ? Math.pow(10, v) : v));
    });
    el("text", {x: (W + M.l) / 2, y: H - 8, "text-anchor": "middle", "font-size": 13}, svg, xlabel + (xlog ? " (log)" : ""));
    el("text", {x: 14, y: (H - M.b) / 2, "text-anchor": "middle", "font-size": 13,
                transform: "rotate(-90 14 " + (H - M.b) / 2 + ")"}, svg, ylabel);
    return {x: x, y: y};
  }
  function linTicks(lo, hi) {  // about six round steps (1, 2 or 5 x 10^k)
    var raw = (hi - lo) / 6, p = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * p; }).filter(function (v) { return v >= raw; })[0];
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(+v.toPrecision(10));
    return out;
  }
  function logTicks(lo, hi) {  // exponents; 2x and 5x steps when the range spans less than two decades
    var out = [];
    for (var e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      (hi - lo < 1 ? [1, 2, 3, 4, 5, 6, 7, 8, 9] : hi - lo < 3 ? [1, 2, 5] : [1]).forEach(function (m) {
        var v = e + Math.log10(m);
        if (v >= lo && v <= hi) out.push(v);
      });
    }
    return out;
  }

  // ----------------------------------------------------------------------------- global trials
  var tip = document.getElementById("tip");
  function showTip(evt, html) {
    tip.innerHTML = html;
    tip.style.display = "block";
    tip.style.left = (evt.pageX + 14) + "px";
    tip.style.top = (evt.pageY + 10) + "px";
  }
  function hideTip() { tip.style.display = "none"; }

  function front(pts, key) {  // non-dominated (max accuracy, min key) among feasible, trained trials
    var ok = pts.filter(function (t) { return t.feasible && !t.screened; });
    ok.sort(function (a, b) { return a.m[key] - b.m[key] || b.m.accuracy - a.m.accuracy; });
    var best = -Infinity, out = [];
    ok.forEach(function (t) { if (t.m.accuracy > best) { out.push(t); best = t.m.accuracy; } });
    return out;
  }

  function trialHtml(t, key) {
    var m = t.m, rows = [["trial", t.id + (t.baseline ? " (baseline " + t.baseline + ")" : "")],
      ["architecture", t.label], ["accuracy", fmt(m.accuracy)]];
    D.metrics.forEach(function (k) { if (m[k.key] !== undefined) rows.push([k.label, fmt(m[k.key])]); });
    rows.push(["generation", t.generation], ["feasible", t.feasible ? "yes" : "no (violation " + fmt(t.violation) + ")"]);
    if (t.screened) rows.push(["screened", "by the zero-cost proxy (not trained)"]);
    if (t.pareto) rows.push(["run's Pareto front", "rank " + t.pareto_rank]);
    return "<b>" + esc(t.label) + "</b><br>" + rows.map(function (r) { return esc(r[0]) + ": " + esc(r[1]); }).join("<br>");
  }

  function showLayers(t) {
    var box = document.getElementById("layers");
    var cols = ["name", "op", "out_shape", "weight_dtype", "act_dtype", "params", "nonzero_params", "sparsity", "macs", "bops"];
    box.innerHTML = "<h3>Trial " + t.id + ": " + esc(t.label) + "</h3><p>Per-layer cost of " + esc(t.source) +
      " (codesign's cost pass, at report time); total BOPs " + fmt(t.m.bops) + ".</p>" + table(t.layers, cols);
    box.scrollIntoView({block: "nearest"});
  }

  function drawGlobal() {
    var svg = document.getElementById("global-plot");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var key = document.getElementById("xmetric").value;
    var showDom = document.getElementById("show-dominated").checked;
    var showInf = document.getElementById("show-infeasible").checked;
    var meta = D.metrics.filter(function (k) { return k.key === key; })[0];
    var pts = D.trials.filter(function (t) { return t.m[key] !== undefined && t.m.accuracy !== undefined && !t.screened; });
    var screened = D.trials.filter(function (t) { return t.screened; });
    if (!pts.length) return;
    var s = axes(svg, pts.map(function (t) { return t.m[key]; }), pts.map(function (t) { return t.m.accuracy; }),
                 meta.label, "validation accuracy", meta.log);
    var fr = front(pts, key), onFront = {};
    fr.forEach(function (t) { onFront[t.id] = true; });
    var d = "";
    fr.forEach(function (t, i) {
      var px = s.x(t.m[key]), py = s.y(t.m.accuracy);
      d += (i ? "H" + px.toFixed(1) + "V" + py.toFixed(1) : "M" + px.toFixed(1) + "," + py.toFixed(1));
    });
    if (d) el("path", {d: d, fill: "none", stroke: COLORS[0], "stroke-width": 1.5, "class": "front-line"}, svg);
    var g = el("g", {"class": "points"}, svg);
    var order = pts.slice().sort(function (a, b) { return (onFront[a.id] ? 1 : 0) - (onFront[b.id] ? 1 : 0); });
    order.forEach(function (t) {
      var cls = "pt " + (t.baseline ? "baseline" : onFront[t.id] ? "front" : t.feasible ? "dominated" : "infeasible");
      var c = el("circle", {cx: s.x(t.m[key]), cy: s.y(t.m.accuracy), r: onFront[t.id] || t.baseline ? 5.5 : 4,
                            "class": cls, "data-trial": t.id}, g);
      if ((!showDom && cls.indexOf("dominated") > 0) || (!showInf && cls.indexOf("infeasible") > 0)) c.style.display = "none";
      c.addEventListener("mousemove", function (e) { showTip(e, trialHtml(t, key)); });
      c.addEventListener("mouseleave", hideTip);
      c.addEventListener("click", function () { showLayers(t); });
    });
    var legend = [["front", "Pareto front for this axis (" + fr.length + ")"], ["dominated", "dominated"],
                  ["infeasible", "over a budget"], ["baseline", "baseline"]];
    var lg = el("g", {"font-size": 11, "class": "legend"}, svg), top = H - M.b - 8 - 16 * legend.length;
    el("rect", {x: W - M.r - 186, y: top, width: 180, height: 16 * legend.length + 4, fill: "#fff", "fill-opacity": 0.85,
                stroke: "#ccc"}, lg);  // bottom right: cheap-and-inaccurate corner, usually empty
    legend.forEach(function (L, i) {
      var yy = top + 15 + 16 * i;
      el("circle", {cx: W - M.r - 174, cy: yy - 4, r: 4.5, "class": L[0]}, lg);
      el("text", {x: W - M.r - 164, y: yy}, lg, L[1]);
    });
    document.getElementById("global-count").textContent =
      pts.length + " trained trials plotted" + (screened.length ? " (+" + screened.length + " screened, untrained)" : "") +
      "; " + fr.length + " on the front for accuracy vs " + meta.label + ".";
  }

  // ----------------------------------------------------------------------------- local stage
  function drawLocal() {
    var svg = document.getElementById("local-plot");
    if (!svg || !D.local) return;
    var curves = D.local.curves, xs = [], ys = [];
    curves.forEach(function (c) { c.points.forEach(function (p) { xs.push(p.sparsity); ys.push(p.accuracy); }); });
    if (!xs.length) return;
    var s = axes(svg, xs.concat([0]), ys, "weight sparsity", "validation accuracy", false);
    var bitsList = D.local.bits;
    curves.forEach(function (c) {
      var col = COLORS[bitsList.indexOf(c.bits) % COLORS.length];
      var pts = c.points.slice().sort(function (a, b) { return a.sparsity - b.sparsity; });
      el("polyline", {points: pts.map(function (p) { return s.x(p.sparsity) + "," + s.y(p.accuracy); }).join(" "),
                      fill: "none", stroke: col, "stroke-width": 1.5, "class": "curve"}, svg);
      pts.forEach(function (p) {
        var dot = el("circle", {cx: s.x(p.sparsity), cy: s.y(p.accuracy), r: p.front ? 5 : 3.5, fill: col,
                                stroke: p.front ? "#000" : "none", "class": "lpt"}, svg);
        dot.addEventListener("mousemove", function (e) {
          showTip(e, "<b>trial " + c.candidate + ", " + c.bits + " bit</b><br>pruning round " + p.round + "<br>accuracy " +
                  fmt(p.accuracy) + "<br>sparsity " + fmt(p.sparsity) + "<br>BOPs " + fmt(p.bops) +
                  (p.LUT !== undefined ? "<br>LUT " + fmt(p.LUT) : "") + (p.front ? "<br>on the local front" : ""));
        });
        dot.addEventListener("mouseleave", hideTip);
      });
    });
    (D.local.float || []).forEach(function (f) {
      el("line", {x1: M.l, x2: W - M.r, y1: s.y(f.accuracy), y2: s.y(f.accuracy), stroke: "#2ca02c",
                  "stroke-dasharray": "5,4"}, svg);
    });
    var lg = el("g", {"font-size": 11}, svg);
    bitsList.forEach(function (b, i) {
      var yy = H - M.b - 12 - 16 * i;
      el("rect", {x: M.l + 10, y: yy - 8, width: 14, height: 4, fill: COLORS[i % COLORS.length]}, lg);
      el("text", {x: M.l + 30, y: yy - 3}, lg, b + "-bit weights");
    });
  }

  var sel = document.getElementById("xmetric");
  if (sel) {
    D.metrics.forEach(function (k) { var o = document.createElement("option"); o.value = k.key; o.textContent = k.label; sel.appendChild(o); });
    ["xmetric", "show-dominated", "show-infeasible"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", drawGlobal);
    });
    drawGlobal();
  }
  drawLocal();
  document.documentElement.setAttribute("data-rendered", "1");
})();
