// Building the page: elements from plain values, never from HTML strings.
// Every text goes in through textContent, so event data (headers, payloads,
// error messages) is shown, never parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** h("a", {href: "#/x", class: "y"}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element: s("circle", {cx: 1, cy: 2, r: 3}) */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

const number = new Intl.NumberFormat();
export function fmtNumber(n) {
  return n === null || n === undefined ? "" : number.format(n);
}

export function fmtRate(perSecond) {
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 10) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}

export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  const sign = ms < 0 ? "-" : "+";
  const abs = Math.abs(ms);
  if (abs < 1) return `${sign}${abs.toFixed(2)} ms`;
  if (abs < 1000) return `${sign}${abs.toFixed(1)} ms`;
  if (abs < 60000) return `${sign}${(abs / 1000).toFixed(2)} s`;
  return `${sign}${(abs / 60000).toFixed(1)} min`;
}

// Colours: each name gets the next colour of the palette the first time it is
// seen, and keeps it on every view of this page; distinct for the first 12.
const PALETTE = ["#2f6fde", "#e8710a", "#1e8e3e", "#9334e6", "#12a4af", "#d93025",
                 "#f9ab00", "#5f6368", "#a142f4", "#185abc", "#b06000", "#c2185b"];
const colours = new Map();
export function colorOf(name) {
  if (!colours.has(name)) colours.set(name, PALETTE[colours.size % PALETTE.length]);
  return colours.get(name);
}

export function chip(name) {
  const node = h("span", {class: "chip", text: name});
  node.style.background = colorOf(name);
  return node;
}

/** A short, pretty preview of an event's data (JSON) or its base64. */
export function preview(record, max = 2000) {
  let text;
  if (record && "data" in record) text = JSON.stringify(record.data, null, 2);
  else if (record && record.data_base64 !== undefined) text = `base64: ${record.data_base64}`;
  else text = "";
  if (text === undefined) text = "null";
  return text.length > max ? `${text.slice(0, max)}\n... (${text.length - max} more characters)` : text;
}

/** Run fn now and every `seconds` until the signal aborts (the view changed). */
export function every(signal, seconds, fn) {
  let timer = null;
  const tick = async () => {
    if (signal.aborted) return;
    try { await fn(); } catch (error) { /* shown by fn's own caller */ }
    if (!signal.aborted) timer = setTimeout(tick, seconds * 1000);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  tick();
}

/** "dead" for a dead-letter topic, "retry" for a retry stage, else "topic". */
export function topicKind(name, info) {
  if ((info.dead_letter_prefixes || []).some((p) => name.startsWith(p))) return "dead";
  if ((info.retry_prefixes || []).some((p) => name.startsWith(p))) return "retry";
  return "topic";
}

/** A link to the trace view of a correlation id (or nothing). */
export function traceLink(correlationId, text = null) {
  if (!correlationId) return "";
  return h("a", {href: `#/trace/${encodeURIComponent(correlationId)}`, class: "mono trace-link",
                 title: "show the whole chain", text: text || correlationId.slice(0, 13)});
}

export function table(headers, rows, {empty = "nothing here", id = null} = {}) {
  const head = h("tr", {}, headers.map((name) => {
    const numeric = name.startsWith("#");
    return h("th", {class: numeric ? "num" : null, text: numeric ? name.slice(1) : name});
  }));
  const body = rows.length ? rows : [h("tr", {}, h("td", {colspan: headers.length, class: "empty", text: empty}))];
  return h("table", {id}, h("thead", {}, head), h("tbody", {}, body));
}
