// Two small SVG charts: lines over time (event rates) and horizontal bars
// (records per topic, lag per group). Each returns a <div class="chart">.

import {colorOf, fmtNumber, h, s} from "./dom.js";

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

/**
 * series: [{name, points: [[unixSeconds, value], ...]}]; format(value) labels the y axis.
 * Every point is a <circle> with a <title>, so a pointer (or a test) can read it.
 */
export function lineChart(series, {width = 640, height = 220, format = fmtNumber, empty = "no data yet"} = {}) {
  const pad = {left: 48, right: 12, top: 10, bottom: 24};
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const all = series.flatMap((line) => line.points);
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, role: "img",
                        "aria-label": series.map((line) => line.name).join(", ")});
  const box = h("div", {class: "chart"}, svg);
  if (all.length === 0) {
    svg.append(s("text", {x: width / 2, y: height / 2, "text-anchor": "middle", text: empty}));
    return box;
  }
  const x0 = Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(...all.map((p) => p[0]), x0 + 1);
  const yMax = niceMax(Math.max(...all.map((p) => p[1])));
  const x = (t) => pad.left + ((t - x0) / (x1 - x0)) * plotW;
  const y = (v) => pad.top + plotH - (v / yMax) * plotH;
  for (let i = 0; i <= 4; i++) {
    const value = (yMax * i) / 4;
    svg.append(
      s("line", {class: i === 0 ? "axis" : "grid-line", x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value)}),
      s("text", {x: pad.left - 6, y: y(value) + 4, "text-anchor": "end", text: format(value)}),
    );
  }
  svg.append(s("line", {class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: pad.top + plotH}));
  for (const [t, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
    svg.append(s("text", {x: x(t), y: height - 6, "text-anchor": anchor, text: clock(t)}));
  }
  for (const line of series) {
    if (line.points.length === 0) continue;
    const color = colorOf(line.name);
    const d = line.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(s("path", {d, fill: "none", stroke: color, "stroke-width": 2, "data-series": line.name}));
    for (const [t, v] of line.points) {
      svg.append(s("circle", {cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.6, fill: color, class: "point",
                              "data-series": line.name, "data-value": v},
                   s("title", {text: `${line.name} ${clock(t)}: ${format(v)}`})));
    }
  }
  box.append(h("div", {class: "legend"}, series.map((line) => {
    const swatch = h("span", {class: "swatch"});
    swatch.style.background = colorOf(line.name);
    return h("span", {}, swatch, line.name);
  })));
  return box;
}

/** items: [{label, value, note?}]; bars scaled to the largest value. */
export function barChart(items, {width = 640, format = fmtNumber, empty = "nothing yet", color = null} = {}) {
  const row = 24;
  const labelW = Math.min(220, 40 + 7 * Math.max(0, ...items.map((item) => item.label.length)));
  const height = Math.max(row * items.length + 8, 40);
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, role: "img"});
  const box = h("div", {class: "chart"}, svg);
  if (items.length === 0) {
    svg.append(s("text", {x: width / 2, y: 24, "text-anchor": "middle", text: empty}));
    return box;
  }
  const max = niceMax(Math.max(...items.map((item) => item.value)));
  const barW = width - labelW - 90;
  items.forEach((item, i) => {
    const top = 4 + i * row;
    const w = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * barW);
    svg.append(
      s("text", {x: labelW - 8, y: top + 15, "text-anchor": "end", text: item.label}),
      s("rect", {x: labelW, y: top + 3, width: w.toFixed(1), height: row - 8, rx: 2,
                 fill: color ? color(item) : colorOf(item.label), class: "bar", "data-label": item.label,
                 "data-value": item.value},
        s("title", {text: `${item.label}: ${format(item.value)}`})),
      s("text", {x: labelW + w + 6, y: top + 15, text: format(item.value) + (item.note ? `  ${item.note}` : "")}),
    );
  });
  return box;
}
