// Dead letters: the list, one inspected (reason, error, attempts, headers,
// body), and the actions: replay to the group that failed it, replay to the
// topic (every group), discard. Each action asks first; the gateway checks
// the token's admin scope.

import {api} from "./api.js";
import {clear, fmtNumber, fmtTime, h, preview, table, topicKind, traceLink} from "./dom.js";

export async function deadLetters(main, params, ctx) {
  const filter = h("select", {id: "dl-topic"}, h("option", {value: "", text: "every dead-letter topic"}));
  const refresh = h("button", {type: "button", text: "Refresh"});
  const listBox = h("div", {id: "dead-letters"}, h("p", {class: "muted", text: "Loading..."}));
  main.append(h("h1", {text: "Dead letters"}),
    h("div", {class: "toolbar"}, h("label", {for: "dl-topic", text: "Topic"}), filter, refresh), listBox);
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("topic") || "";
  try {
    const topics = (await api("topics", {signal: ctx.signal})).topics
      .filter((t) => topicKind(t.name, ctx.info) === "dead");
    for (const t of topics) {
      filter.append(h("option", {value: t.name, text: `${t.name} (${fmtNumber(t.messages)})`}));
    }
    filter.value = wanted;
  } catch (error) {
    ctx.fail(error);
  }
  const load = async () => {
    let answer;
    try {
      answer = await api("deadletters", {query: {topic: filter.value, limit: 500}, signal: ctx.signal});
    } catch (error) {
      ctx.fail(error);
      clear(listBox);
      return;
    }
    const rows = answer.dead_letters.map((letter) => h("tr", {class: "dl-row", dataset: {id: letter.id}},
      h("td", {}, h("a", {href: `#/deadletters/${encodeURIComponent(letter.id)}`, class: "mono inspect",
                          text: letter.id})),
      h("td", {text: letter.original_topic}),
      h("td", {text: letter.group || "(every group)"}),
      h("td", {text: letter.event_type || ""}),
      h("td", {}, h("span", {class: "tag bad", text: letter.reason}), " ",
        letter.error_type ? `${letter.error_type}: ${letter.error_message}`.slice(0, 160) : ""),
      h("td", {class: "num", text: fmtNumber(letter.attempts)}),
      h("td", {text: fmtTime(letter.last_failure)}),
    ));
    clear(listBox).append(table(["Id", "Topic", "Group", "Type", "Why", "#Attempts", "Last failure"], rows,
                                {empty: "no dead letters: every event was handled"}));
  };
  filter.addEventListener("change", load);
  refresh.addEventListener("click", load);
  await load();
}

function fields(pairs) {
  return h("dl", {class: "fields"}, pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([name, value]) => [h("dt", {text: name}), h("dd", {}, value)]));
}

export async function deadLetter(main, [id], ctx) {
  main.append(h("p", {}, h("a", {href: "#/deadletters", text: "< every dead letter"})));
  let letter;
  try {
    letter = await api(`deadletters/${encodeURIComponent(id)}`, {signal: ctx.signal});
  } catch (error) {
    if (error.status === 404) {
      main.append(h("h1", {text: "Gone"}), h("p", {text: `No dead letter ${id}: it was replayed or discarded.`}));
      return;
    }
    throw error;
  }
  const headers = letter.headers || {};
  const correlation = headers.ce_correlationid || letter.event_id;
  const body = preview(letter);
  const replay = h("button", {type: "button", class: "primary", id: "replay",
                              text: letter.group ? `Replay to ${letter.group}` : "Replay"});
  const replayTopic = h("button", {type: "button", id: "replay-topic", text: "Replay to the topic (every group)"});
  const discard = h("button", {type: "button", class: "danger", id: "discard", text: "Discard"});
  const buttons = [replay, replayTopic, discard];
  const act = async (question, okLabel, request, done) => {
    if (!(await ctx.confirm(question, okLabel))) return;
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const answer = await api(request.path, {method: request.method, query: request.query});
      ctx.notify(done(answer), "ok");
      ctx.go("#/deadletters", {keep: true});
    } catch (error) {
      ctx.fail(error);
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  const path = `deadletters/${encodeURIComponent(letter.id)}`;
  replay.addEventListener("click", () => act(
    letter.group
      ? `Send ${letter.id} back to group ${letter.group} on ${letter.original_topic}, then remove it from the dead letters?`
      : `Publish ${letter.id} again on ${letter.original_topic}, then remove it from the dead letters?`,
    "Replay", {path: `${path}/replay`, method: "POST"},
    (a) => `Replayed ${a.replayed} to ${a.topic}${a.group ? ` (group ${a.group})` : " (every group)"}.`));
  replayTopic.addEventListener("click", () => act(
    `Publish ${letter.id} again on ${letter.original_topic} for EVERY group (groups that handled it already see it again), then remove it?`,
    "Replay to every group", {path: `${path}/replay`, method: "POST", query: {to_topic: "true"}},
    (a) => `Replayed ${a.replayed} to ${a.topic} (every group).`));
  discard.addEventListener("click", () => act(
    `Discard ${letter.id} for good? The event will not be handled.`, "Discard",
    {path, method: "DELETE"}, (a) => `Discarded ${a.discarded}.`));
  const headerRows = Object.keys(headers).sort().map((name) => h("tr", {},
    h("td", {class: "mono", text: name}), h("td", {class: "mono", text: headers[name]})));
  main.append(
    h("h1", {}, "Dead letter ", h("span", {class: "mono", id: "dl-id", text: letter.id})),
    h("div", {class: "toolbar"}, buttons),
    h("div", {class: "grid"},
      h("section", {class: "panel"}, h("h2", {text: "Why"}), fields([
        ["reason", h("span", {class: "tag bad", text: letter.reason})],
        ["error", letter.error_type ? h("span", {id: "dl-error", text: `${letter.error_type}: ${letter.error_message}`}) : ""],
        ["attempts", fmtNumber(letter.attempts)],
        ["first failure", fmtTime(letter.first_failure)],
        ["last failure", fmtTime(letter.last_failure)],
        ["group", letter.group || "(every group)"],
      ])),
      h("section", {class: "panel"}, h("h2", {text: "Event"}), fields([
        ["id", letter.event_id ? h("span", {class: "mono", text: letter.event_id}) : ""],
        ["type", letter.event_type],
        ["topic", h("a", {href: `#/topics/${encodeURIComponent(letter.original_topic)}`, text: letter.original_topic})],
        ["key", letter.key],
        ["source", headers.ce_source],
        ["time", fmtTime(headers.ce_time)],
        ["correlation", correlation ? traceLink(correlation, correlation) : ""],
      ]))),
    h("h2", {text: "Body"}), h("pre", {id: "dl-body", text: body || "(empty)"}),
    h("h2", {text: "Headers"}), table(["Header", "Value"], headerRows, {id: "dl-headers"}),
  );
}
