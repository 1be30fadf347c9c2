// One topic's records, oldest first, a page at a time (read without consuming).

import {api} from "./api.js";
import {clear, fmtTime, h, preview, table, traceLink} from "./dom.js";

const PAGE = 50;

export async function topic(main, [name], ctx) {
  const listBox = h("div", {id: "topic-records"});
  const more = h("button", {type: "button", id: "topic-more", text: "Next page", hidden: true});
  main.append(h("p", {}, h("a", {href: "#/overview", text: "< overview"})),
    h("h1", {}, "Topic ", h("span", {class: "mono", text: name})),
    h("p", {class: "muted", text: "Stored records, oldest first, read without consuming them."}),
    listBox, h("div", {class: "toolbar"}, more));
  const rows = [];
  const load = async (after) => {
    let answer;
    try {
      answer = await api(`api/dashboard/topics/${encodeURIComponent(name)}/records`,
                         {query: {after, limit: PAGE}, signal: ctx.signal});
    } catch (error) {
      ctx.fail(error);
      return;
    }
    for (const record of answer.records) {
      const event = record.event;
      rows.push(h("tr", {class: "topic-record"},
        h("td", {class: "num", text: record.offset}),
        h("td", {class: "mono", text: record.key ?? ""}),
        event ? h("td", {}, h("strong", {text: event.type}), h("div", {class: "muted mono", text: event.id}))
              : h("td", {}, h("span", {class: "tag bad", text: "not a CloudEvent"}), record.problem),
        h("td", {text: event ? event.source : ""}),
        h("td", {text: fmtTime(event && event.time ? event.time : record.timestamp)}),
        h("td", {}, event ? traceLink(event.correlationid) : ""),
        h("td", {}, h("details", {}, h("summary", {text: "data"}), h("pre", {text: preview(event || record)}))),
      ));
    }
    clear(listBox).append(table(["#Offset", "Key", "Event", "Source", "Time", "Correlation", "Data"], rows,
                                {empty: "no records"}));
    more.hidden = answer.records.length < PAGE;
    more.onclick = () => load(answer.next);
  };
  await load(0);
}
