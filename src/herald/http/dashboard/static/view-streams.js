// The event store: streams by name, and one stream's events by version.

import {api} from "./api.js";
import {clear, fmtNumber, fmtTime, h, preview, table, traceLink} from "./dom.js";

const PAGE = 50;

function noStore(main) {
  main.append(h("h1", {text: "Streams"}), h("p", {class: "muted"},
    "This gateway serves no event store. Start it with one: ",
    h("code", {text: "herald serve app:app --store sqlite:///events.db"}), " or ",
    h("code", {text: "create_gateway(app, store=...)"}), "."));
}

export async function streams(main, params, ctx) {
  if (!ctx.info.store) { noStore(main); return; }
  const prefix = h("input", {id: "stream-prefix", placeholder: "name starts with...", spellcheck: "false"});
  const form = h("form", {class: "toolbar"}, prefix, h("button", {type: "submit", text: "Search"}));
  const listBox = h("div", {id: "streams"});
  main.append(h("h1", {text: "Streams"}), form, listBox);
  const load = async () => {
    let answer;
    try {
      answer = await api("streams", {query: {prefix: prefix.value.trim(), limit: 500}, signal: ctx.signal});
    } catch (error) {
      ctx.fail(error);
      return;
    }
    const rows = answer.streams.map((info) => h("tr", {class: "stream-row", dataset: {stream: info.stream}},
      h("td", {}, h("a", {href: `#/streams/${encodeURIComponent(info.stream)}`, text: info.stream})),
      h("td", {class: "num", text: fmtNumber(info.version)}),
      h("td", {text: fmtTime(info.first_recorded)}),
      h("td", {text: fmtTime(info.last_recorded)}),
    ));
    clear(listBox).append(table(["Stream", "#Version", "First event", "Last event"], rows,
                                {empty: "no streams" + (prefix.value ? " with this prefix" : "")}));
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
}

export async function stream(main, [name], ctx) {
  if (!ctx.info.store) { noStore(main); return; }
  const listBox = h("div", {id: "stream-events"});
  const more = h("button", {type: "button", id: "stream-more", text: "Next page", hidden: true});
  main.append(h("p", {}, h("a", {href: "#/streams", text: "< every stream"})),
    h("h1", {}, "Stream ", h("span", {class: "mono", text: name})), listBox, h("div", {class: "toolbar"}, more));
  const rows = [];
  const load = async (fromVersion) => {
    let answer;
    try {
      answer = await api(`streams/${name.split("/").map(encodeURIComponent).join("/")}`,
                         {query: {from_version: fromVersion, limit: PAGE}, signal: ctx.signal});
    } catch (error) {
      ctx.fail(error);
      return;
    }
    for (const stored of answer.events) {
      const event = stored.event;
      rows.push(h("tr", {class: "stream-event", dataset: {version: stored.version, type: event.type}},
        h("td", {class: "num", text: fmtNumber(stored.version)}),
        h("td", {class: "num", text: fmtNumber(stored.position)}),
        h("td", {}, h("strong", {text: event.type}), h("div", {class: "muted mono", text: event.id})),
        h("td", {text: event.source}),
        h("td", {text: fmtTime(event.time || stored.recorded_at)}),
        h("td", {}, traceLink(event.correlationid)),
        h("td", {}, h("details", {}, h("summary", {text: "data"}), h("pre", {text: preview(event)}))),
      ));
    }
    clear(listBox).append(table(["#Version", "#Position", "Event", "Source", "Time", "Correlation", "Data"], rows,
                                {empty: "no events"}));
    const last = answer.events.at(-1);
    more.hidden = answer.events.length < PAGE;
    more.onclick = () => load(last.version + 1);
  };
  await load(null);
}
