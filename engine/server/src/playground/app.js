// The playground's behaviour. It draws the flows from /playground/api/flows as SVG, opens a
// web chat session (POST /webchat/sessions), shows the bot's replies from the event stream
// (/webchat/events), posts what the designer types or taps (/webchat/messages), and after each
// reply reads the conversation's state (/playground/api/state) to highlight its node and show
// its variables. Reset: POST /playground/api/reset. Plain DOM, nothing loaded from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** What the page knows. */
const page = {
  token: null,
  /** The last /playground/api/flows answer. */
  flows: null,
  /** The id of the flow drawn. */
  shown: null,
  /** The last /playground/api/state answer shown. */
  conversation: null,
  /** State requests made, and the newest one shown (answers may come back out of order). */
  stateAsked: 0,
  stateShown: 0,
  refreshTimer: null,
  typingTimer: null,
};

// ---- the server ------------------------------------------------------------------------------

/** One request; its JSON answer, or an Error carrying the server's `error`. */
async function call(method, path, body) {
  const headers = {};
  if (page.token) headers["Authorization"] = "Bearer " + page.token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    throw new Error((json && json.error) || `${method} ${path}: HTTP ${response.status}`);
  }
  return json;
}

function withToken(path) {
  return path + "?token=" + encodeURIComponent(page.token);
}

/** Shows what went wrong (or hides the last problem, with null). */
function problem(message) {
  const p = $("problem");
  p.textContent = message || "";
  p.hidden = !message;
}

// ---- flows and their drawing -------------------------------------------------------------------

/** Loads the flows of `version` (the newest when absent) and draws one of them. */
async function loadFlows(version) {
  const query = version ? "?version=" + encodeURIComponent(version) : "";
  page.flows = await call("GET", "/playground/api/flows" + query);
  const picker = $("flow-picker");
  picker.replaceChildren(
    ...page.flows.flows.map((flow) => {
      const option = document.createElement("option");
      option.value = flow.id;
      option.textContent = flow.title ? `${flow.title} (${flow.id})` : flow.id;
      return option;
    }),
  );
  const newest = page.flows.head ? "" : " (a conversation pinned to an older version)";
  $("version").textContent = `version ${page.flows.version.slice(0, 12)}${newest}`;
  const known = page.flows.flows.some((flow) => flow.id === page.shown);
  show(known ? page.shown : page.flows.entry || (page.flows.flows[0] || {}).id);
}

/** Draws flow `id`. */
function show(id) {
  const drawing = page.flows && page.flows.flows.find((flow) => flow.id === id);
  page.shown = drawing ? id : null;
  $("flow-picker").value = page.shown || "";
  $("graph").replaceChildren(...(drawing ? [draw(drawing, page.flows.box_size)] : []));
  highlight();
}

/** An SVG element with `attributes`, appended to `parent`. */
function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function draw(drawing, [w, h]) {
  const root = svg("svg", {
    class: "flow",
    width: drawing.width,
    height: drawing.height,
    viewBox: `0 0 ${drawing.width} ${drawing.height}`,
    "data-flow": drawing.id,
    role: "img",
    "aria-label": `Flow ${drawing.id}`,
  });
  const marker = svg(
    "marker",
    {
      id: "arrow",
      viewBox: "0 0 10 10",
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: "auto-start-reverse",
    },
    svg("defs", {}, root),
  );
  svg("path", { d: "M0,0 L10,5 L0,10 z" }, marker);
  const edges = svg("g", { class: "edges" }, root);
  for (const edge of drawing.edges) drawEdge(edges, edge);
  const layer = svg("g", { class: "boxes" }, root);
  for (const b of drawing.boxes) drawBox(layer, b, [w, h]);
  return root;
}

/** An edge through its points: each two joined by a curve that leaves and arrives vertically
 * (a straight line when they are one above the other or side by side). */
function drawEdge(parent, edge) {
  const g = svg("g", {
    class: edge.dashed ? "edge dashed" : "edge",
    "data-from": edge.from,
    "data-to": edge.to,
  }, parent);
  const [first, ...rest] = edge.points;
  let d = `M${first[0]},${first[1]}`;
  let [px, py] = first;
  for (const [x, y] of rest) {
    const middle = (py + y) / 2;
    d += px === x || py === y ? ` L${x},${y}` : ` C${px},${middle} ${x},${middle} ${x},${y}`;
    [px, py] = [x, y];
  }
  svg("path", { d, "marker-end": "url(#arrow)" }, g);
  if (edge.label) {
    const [x, y] = edge.label_at;
    const label = svg("text", { x, y: y + 4, "text-anchor": "middle" }, g);
    label.textContent = clip(edge.label, 28);
  }
}

function drawBox(parent, b, [w, h]) {
  if (b.kind === "start") {
    const g = svg("g", { class: "start", "data-key": b.key }, parent);
    svg("circle", { cx: b.x + w / 2, cy: b.y + h / 2, r: 12 }, g);
    tooltip(g, "start");
    return;
  }
  const kind = { node: "box", flow: "box exit", intent: "box intent" }[b.kind] || "box";
  const g = svg("g", { class: kind, "data-key": b.key, transform: `translate(${b.x},${b.y})` }, parent);
  if (b.node !== undefined) {
    g.setAttribute("data-node", b.node);
    g.setAttribute("data-kind", b.node_kind);
  }
  svg("rect", { width: w, height: h, rx: 8 }, g);
  const title = b.node_kind ? `${b.title} · ${b.node_kind}` : b.title;
  svg("text", { class: "title", x: 10, y: 22 }, g).textContent = clip(title, (w - 20) / 7.5);
  svg("text", { class: "detail", x: 10, y: 42 }, g).textContent = clip(b.detail, (w - 20) / 6);
  tooltip(g, [title, b.detail].filter(Boolean).join("\n"));
}

function tooltip(parent, text) {
  svg("title", {}, parent).textContent = text;
}

/** `text` cut to about `chars` characters. */
function clip(text, chars) {
  const most = Math.floor(chars);
  return text.length > most ? text.slice(0, most - 1) + "…" : text;
}

/** Marks the conversation's node in the drawing, when the drawing is of its flow. */
function highlight() {
  const graph = $("graph");
  for (const box of graph.querySelectorAll(".box.current")) box.classList.remove("current");
  const at = page.conversation;
  if (!at || !at.node || at.flow !== page.shown) return;
  for (const box of graph.querySelectorAll(".box[data-node]")) {
    if (box.dataset.node === at.node) box.classList.add("current");
  }
}

// ---- the conversation's state ------------------------------------------------------------------

/** Reads the conversation's state; follows it into another flow or version; shows it. */
async function refreshState() {
  if (!page.token) return;
  const asked = ++page.stateAsked;
  let state;
  try {
    state = await call("GET", withToken("/playground/api/state"));
  } catch (error) {
    problem(error.message);
    return;
  }
  if (asked < page.stateShown) return;
  page.stateShown = asked;
  const before = page.conversation;
  page.conversation = state;
  if (state.version && page.flows && state.version !== page.flows.version) {
    await loadFlows(state.version);
  }
  // Follow the conversation when it moves to another flow; a flow picked by hand stays
  // drawn while the conversation stays where it is.
  const moved = !before || before.flow !== state.flow;
  if (state.flow && moved && state.flow !== page.shown) show(state.flow);
  renderState(state);
  highlight();
}

/** Refreshes the state soon, once for a burst of replies. */
function refreshSoon(ms = 80) {
  clearTimeout(page.refreshTimer);
  page.refreshTimer = setTimeout(refreshState, ms);
}

function renderState(state) {
  $("state-flow").textContent = state.flow || "–";
  $("state-node").textContent = state.node || "–";
  $("state-status").textContent = state.waiting
    ? `${state.status}, waiting for ${state.waiting}`
    : state.status;
  document.body.dataset.status = state.status;
  const error = $("state-error");
  error.textContent = state.error || "";
  error.hidden = !state.error;
  $("variables").textContent = JSON.stringify(state.variables, null, 2);
}

// ---- the chat ----------------------------------------------------------------------------------

/** Opens a web chat session and listens to its replies. */
async function openSession() {
  const session = await call("POST", "/webchat/sessions");
  page.token = session.token;
  const events = new EventSource(withToken("/webchat/events"));
  events.addEventListener("open", () => {
    document.body.dataset.session = "open";
  });
  events.addEventListener("error", () => {
    // EventSource reconnects by itself, and the server replays what was missed.
    document.body.dataset.session = "reconnecting";
  });
  events.addEventListener("typing", (event) => typing(JSON.parse(event.data).ms));
  events.addEventListener("message", (event) => {
    typing(0);
    botSaid(JSON.parse(event.data));
    refreshSoon();
  });
}

/** Adds a chat bubble. */
function bubble(who, text) {
  const item = document.createElement("li");
  item.className = who;
  item.textContent = text;
  const list = $("messages");
  list.appendChild(item);
  list.scrollTop = list.scrollHeight;
  return item;
}

function botSaid(message) {
  const item = bubble("bot", message.text || "");
  const buttons = message.buttons || [];
  if (buttons.length) {
    const row = document.createElement("div");
    row.className = "buttons";
    for (const b of buttons) row.appendChild(buttonFor(b));
    item.appendChild(row);
  }
  quickReplies(message.quick_replies || []);
}

/** A message button: a link for `url` (web addresses only), else a postback. */
function buttonFor(b) {
  if (b.url && /^https?:\/\//i.test(b.url)) {
    const link = document.createElement("a");
    link.href = b.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = b.title;
    return link;
  }
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = b.title;
  button.addEventListener("click", () => send(b.title, b.payload));
  return button;
}

/** Shows the quick replies of the last message (none clears them). */
function quickReplies(replies) {
  $("quick-replies").replaceChildren(
    ...replies.map((reply) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = reply.title;
      button.dataset.payload = reply.payload || reply.title;
      button.addEventListener("click", () => send(reply.title, reply.payload || reply.title));
      return button;
    }),
  );
}

function typing(ms) {
  clearTimeout(page.typingTimer);
  $("typing").hidden = !ms;
  if (ms) page.typingTimer = setTimeout(() => typing(0), ms + 1000);
}

/** Posts what the designer typed or tapped. */
async function send(text, payload) {
  if (!page.token || (!text.trim() && !payload)) return;
  bubble("user", text);
  quickReplies([]);
  const body = payload ? { text, payload } : { text };
  try {
    await call("POST", "/webchat/messages", body);
    problem(null);
  } catch (error) {
    problem(error.message);
  }
  // A message may change the state without a reply (a `set`, a `wait`): look anyway.
  refreshSoon(400);
}

/** Starts the conversation over and waits until the state shows it. */
async function reset() {
  if (!page.token) return;
  await refreshState();
  const turnsBefore = page.conversation ? page.conversation.turns : 0;
  let answer;
  try {
    answer = await call("POST", withToken("/playground/api/reset"));
  } catch (error) {
    problem(error.message);
    return;
  }
  $("messages").replaceChildren();
  quickReplies([]);
  bubble("note", "The conversation starts over: say something.");
  // The conversation's writer applies the reset as a turn of its own: look until it has.
  for (let i = 0; answer.reset && i < 50; i++) {
    await refreshState();
    if (page.conversation && page.conversation.turns > turnsBefore) return;
    await sleep(100);
  }
  await refreshState();
}

// ---- start -------------------------------------------------------------------------------------

async function main() {
  $("flow-picker").addEventListener("change", (event) => show(event.target.value));
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    input.value = "";
    send(text);
  });
  $("reset").addEventListener("click", reset);
  try {
    await loadFlows();
    await openSession();
    await refreshState();
  } catch (error) {
    problem(error.message);
  }
}

main();
