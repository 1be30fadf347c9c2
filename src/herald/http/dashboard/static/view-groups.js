// Consumer groups: each group's lag in all and per topic, refreshed while shown.

import {api} from "./api.js";
import {barChart} from "./charts.js";
import {clear, every, fmtNumber, h, table} from "./dom.js";

export async function groups(main, params, ctx) {
  const chartBox = h("div", {class: "panel", id: "lag-chart"});
  const tableBox = h("div", {id: "groups"});
  main.append(h("h1", {text: "Consumer groups"}),
    h("p", {class: "muted", text: "Lag: records a group has not handled yet. Committed: records it has."}),
    h("h2", {text: "Lag by group"}), chartBox, h("h2", {text: "Positions"}), tableBox);
  every(ctx.signal, ctx.info.poll_seconds, async () => {
    let answer;
    try {
      answer = await api("groups", {signal: ctx.signal});
    } catch (error) {
      ctx.fail(error);
      return;
    }
    const list = answer.groups;
    clear(chartBox).append(barChart(list.map((g) => ({label: g.group, value: g.lag})), {
      empty: "no consumer group has read a topic yet",
      color: (item) => (item.value > 0 ? "#c62828" : "#2e7d32"),
    }));
    const rows = list.flatMap((g) => g.topics.map((t, i) => h("tr", {class: "group-row", dataset: {group: g.group, topic: t.topic, lag: t.lag}},
      h("td", {}, i === 0 ? h("strong", {text: g.group}) : ""),
      h("td", {class: "num"}, i === 0 ? h("span", {class: g.lag > 0 ? "lag-bad" : "lag-ok", text: fmtNumber(g.lag)}) : ""),
      h("td", {}, h("a", {href: `#/topics/${encodeURIComponent(t.topic)}`, text: t.topic})),
      h("td", {class: "num", text: fmtNumber(t.committed)}),
      h("td", {class: "num"}, h("span", {class: t.lag > 0 ? "lag-bad" : "lag-ok", text: fmtNumber(t.lag)})),
    )));
    clear(tableBox).append(table(["Group", "#Lag", "Topic", "#Committed", "#Lag on topic"], rows,
                                 {empty: "no consumer group has read a topic yet"}));
  });
}
