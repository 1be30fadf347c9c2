// Overview: counts, the event rate of each topic (from samples of record
// counts the gateway keeps), records per topic, and the topics table.

import {api} from "./api.js";
import {barChart, lineChart} from "./charts.js";
import {clear, every, fmtNumber, fmtRate, h, table, topicKind} from "./dom.js";

const WINDOW = 90; // samples on the chart

/** Per topic, [[t, events per second], ...] from successive samples of its record count. */
export function ratesOf(samples, keep) {
  const series = new Map();
  for (let i = 1; i < samples.length; i++) {
    const before = samples[i - 1];
    const now = samples[i];
    const dt = now.t - before.t;
    if (dt <= 0) continue;
    for (const [name, count] of Object.entries(now.messages)) {
      if (!keep(name)) continue;
      const previous = before.messages[name] ?? 0;
      if (!series.has(name)) series.set(name, []);
      series.get(name).push([now.t, Math.max(0, (count - previous) / dt)]);
    }
  }
  return [...series.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, points]) => ({name, points: points.slice(-WINDOW)}));
}

function card(label, value, {bad = false, href = null, id = null} = {}) {
  const body = [h("div", {class: "value", text: value}), h("div", {class: "label", text: label})];
  return h("div", {class: bad ? "card bad" : "card", id}, href ? h("a", {href}, body) : body);
}

export async function overview(main, params, ctx) {
  const cards = h("div", {class: "cards"});
  const rateBox = h("div", {class: "panel", id: "rate-chart"}, h("p", {class: "muted", text: "sampling..."}));
  const countBox = h("div", {class: "panel", id: "count-chart"});
  const topicsBox = h("div", {id: "topics"});
  main.append(
    h("h1", {text: "Overview"}), cards,
    h("div", {class: "grid"},
      h("section", {}, h("h2", {text: "Events per second, by topic"}), rateBox),
      h("section", {}, h("h2", {text: "Records per topic"}), countBox)),
    h("h2", {text: "Topics"}), topicsBox,
  );
  const keep = (name) => topicKind(name, ctx.info) !== "retry";
  const poll = async () => {
    let topics;
    let rates;
    try {
      [topics, rates] = await Promise.all([
        api("topics", {signal: ctx.signal}), api("api/dashboard/rates", {signal: ctx.signal})]);
    } catch (error) {
      ctx.fail(error);
      return;
    }
    const list = topics.topics;
    const user = list.filter((t) => topicKind(t.name, ctx.info) === "topic");
    const dead = list.filter((t) => topicKind(t.name, ctx.info) === "dead");
    const groupNames = new Set(list.flatMap((t) => t.groups.map((g) => g.group)));
    const lag = list.reduce((sum, t) => sum + t.groups.reduce((s, g) => s + g.lag, 0), 0);
    const deadCount = dead.reduce((sum, t) => sum + t.messages, 0);
    clear(cards).append(
      card("topics", fmtNumber(user.length)),
      card("records", fmtNumber(user.reduce((sum, t) => sum + t.messages, 0))),
      card("groups", fmtNumber(groupNames.size), {href: "#/groups"}),
      card("lag", fmtNumber(lag), {bad: lag > 0, href: "#/groups"}),
      card("dead letters", fmtNumber(deadCount), {bad: deadCount > 0, href: "#/deadletters", id: "dead-count"}),
    );
    const series = ratesOf(rates.samples, keep);
    const now = new Map(series.map((line) => [line.name, line.points.at(-1)?.[1] ?? 0]));
    clear(rateBox).append(lineChart(series, {format: fmtRate, empty: "collecting samples..."}));
    clear(countBox).append(barChart(list.filter((t) => keep(t.name))
      .map((t) => ({label: t.name, value: t.messages}))));
    const rows = list.map((t) => {
      const kind = topicKind(t.name, ctx.info);
      return h("tr", {class: "topic-row", dataset: {topic: t.name}},
        h("td", {}, h("a", {href: `#/topics/${encodeURIComponent(t.name)}`, text: t.name}), " ",
          kind === "dead" ? h("span", {class: "tag bad", text: "dead letters"}) : "",
          kind === "retry" ? h("span", {class: "tag", text: "retry stage"}) : ""),
        h("td", {class: "num", text: fmtNumber(t.partitions)}),
        h("td", {class: "num", text: fmtNumber(t.messages)}),
        h("td", {class: "num", text: fmtNumber(t.delayed)}),
        h("td", {class: "num", text: now.has(t.name) ? fmtRate(now.get(t.name)) : ""}),
        h("td", {}, t.groups.map((g) => h("span", {class: g.lag > 0 ? "tag bad" : "tag",
                                                     text: `${g.group}: lag ${fmtNumber(g.lag)}`}))),
      );
    });
    clear(topicsBox).append(table(["Topic", "#Partitions", "#Records", "#Delayed", "#Rate", "Groups"], rows,
                                  {empty: "no topics yet: nothing was published"}));
  };
  every(ctx.signal, ctx.info.poll_seconds, poll);
}
