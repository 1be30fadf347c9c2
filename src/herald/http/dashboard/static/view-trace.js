// The chain of one correlation id as a causal tree: who published what,
// caused by which event, on which topic or stream, and how long after its
// cause. A waterfall beside the tree puts every event on one time line.

import {api} from "./api.js";
import {chip, colorOf, fmtMs, fmtNumber, fmtTime, h, s} from "./dom.js";

const BAR_W = 320;

function waterfall(node, parent, total) {
  const x = (ms) => 6 + (total > 0 ? (ms / total) * (BAR_W - 12) : 0);
  const svg = s("svg", {viewBox: `0 0 ${BAR_W} 20`, width: BAR_W, height: 20, class: "waterfall"},
    s("line", {x1: 6, x2: BAR_W - 6, y1: 10, y2: 10, stroke: "#e3e6eb", "stroke-width": 2}));
  const at = node.since_start_ms ?? 0;
  if (parent && parent.since_start_ms !== null) {
    svg.append(s("rect", {x: x(parent.since_start_ms), y: 7, height: 6, rx: 2, fill: colorOf(node.source),
                          "fill-opacity": 0.35, width: Math.max(1, x(at) - x(parent.since_start_ms))}));
  }
  svg.append(s("circle", {cx: x(at), cy: 10, r: 5, fill: colorOf(node.source)},
               s("title", {text: `${node.type} at ${fmtMs(at)} from the first event`})));
  return svg;
}

function place(node) {
  const parts = [];
  for (const t of node.topics) {
    parts.push(h("a", {class: "tag", href: `#/topics/${encodeURIComponent(t.topic)}`, text: `${t.topic} @${t.offset}`}));
  }
  for (const st of node.streams) {
    parts.push(h("a", {class: "tag", href: `#/streams/${encodeURIComponent(st.stream)}`, text: `${st.stream} v${st.version}`}));
  }
  for (const dl of node.dead_letters) {
    parts.push(h("a", {class: "tag bad dead-letter", href: `#/deadletters/${encodeURIComponent(dl.id)}`,
                       title: dl.error || dl.reason, text: `dead letter ${dl.id}${dl.group ? ` (${dl.group})` : ""}`}));
  }
  return parts;
}

function render(tree) {
  const byId = new Map(tree.nodes.map((node) => [node.id, node]));
  const total = tree.duration_ms || 0;
  const rows = tree.nodes.map((node) => {
    const parent = node.parent ? byId.get(node.parent) : null;
    const indent = h("span", {class: "indent"});
    indent.style.width = `${node.depth * 1.6}rem`;
    return h("div", {class: node.dead_letters.length ? "trace-node dead" : "trace-node",
                     dataset: {id: node.id, source: node.source, type: node.type, depth: node.depth,
                               parent: node.parent || ""}},
      h("div", {class: "what"},
        indent, node.depth > 0 ? h("span", {class: "branch", text: "\u2514\u2500 "}) : "",
        chip(node.source), " ", h("strong", {class: "event-type", text: node.type}),
        node.subject ? h("span", {class: "muted", text: `  ${node.subject}`}) : "",
        h("div", {class: "detail"},
          h("span", {class: "indent-pad"}), place(node), " ",
          h("span", {text: fmtTime(node.time)}), " ",
          parent ? h("strong", {class: "since-parent", text: `${fmtMs(node.since_parent_ms)} after its cause`}) : "",
          node.missing_parent ? h("span", {class: "tag bad", text: `cause ${node.missing_parent.slice(0, 13)} not found`}) : "",
          " ", h("span", {class: "mono", title: "event id", text: node.id}))),
      h("div", {class: "bar"}, waterfall(node, parent, total)));
  });
  for (const row of rows) {
    const pad = row.querySelector(".indent-pad");
    pad.style.display = "inline-block";
    pad.style.width = `${Number(row.dataset.depth) * 1.6 + (Number(row.dataset.depth) > 0 ? 1.6 : 0)}rem`;
  }
  const axis = s("svg", {viewBox: `0 0 ${BAR_W} 16`, width: BAR_W, height: 16},
    s("text", {x: 6, y: 12, "text-anchor": "start", text: "0 ms"}),
    s("text", {x: BAR_W - 6, y: 12, "text-anchor": "end", text: fmtMs(total).replace("+", "")}));
  const head = h("div", {class: "trace-head"},
    h("div", {class: "what muted", text: "event, published by (service), where it is, when"}),
    h("div", {class: "bar chart"}, axis));
  return [head, ...rows];
}

export async function trace(main, [correlationId], ctx) {
  const input = h("input", {id: "trace-id", placeholder: "correlation id (the first event's id)", size: 44,
                            spellcheck: "false", value: correlationId || ""});
  const form = h("form", {class: "toolbar"}, input, h("button", {type: "submit", class: "primary", text: "Show the chain"}));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) ctx.go(`#/trace/${encodeURIComponent(value)}`);
  });
  main.append(h("h1", {text: "Trace"}), form);
  if (!correlationId) {
    main.append(h("p", {class: "muted", text:
      "Every event published while handling another carries its correlation id and names it as the cause. " +
      "Paste a correlation id, or follow a correlation link from a topic, a stream or a dead letter."}));
    return;
  }
  let tree;
  try {
    tree = await api(`api/dashboard/traces/${encodeURIComponent(correlationId)}`, {signal: ctx.signal});
  } catch (error) {
    if (error.status === 404) {
      main.append(h("p", {class: "empty", id: "trace-missing", text: error.detail}));
      return;
    }
    throw error;
  }
  const searched = tree.searched;
  const topicsRead = Object.values(searched.topics).reduce((a, b) => a + b, 0);
  main.append(
    h("div", {class: "cards", id: "trace-summary"},
      h("div", {class: "card"}, h("div", {class: "value", text: fmtNumber(tree.nodes.length)}), h("div", {class: "label", text: "events"})),
      h("div", {class: "card"}, h("div", {class: "value", text: fmtNumber(tree.services.length)}), h("div", {class: "label", text: "services"})),
      h("div", {class: "card"}, h("div", {class: "value", text: fmtMs(tree.duration_ms).replace("+", "")}), h("div", {class: "label", text: "first to last"}))),
    h("p", {id: "trace-services"}, "Services: ", tree.services.map((name) => [chip(name), " "])),
    h("div", {class: "tree", id: "trace-tree"}, render(tree)),
    h("p", {class: "muted"}, `Searched ${fmtNumber(topicsRead)} records on ${Object.keys(searched.topics).length} topics` +
      (searched.store !== null ? ` and ${fmtNumber(searched.store)} events of the store` : "") +
      ` (at most ${fmtNumber(searched.scan)} each). `,
      searched.truncated.length ? h("span", {class: "tag bad", text: `stopped early in: ${searched.truncated.join(", ")}`}) : ""),
  );
}
