// The recforge page: find items by title, add them to a basket (with ratings when the model takes them), see the
// recommendations with their scores and why, or switch to a known user. Plain JavaScript, no build step.
"use strict";

const state = { model: null, basket: [], mode: "basket", user: null, seq: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ")
      : data.detail;
    throw new Error(detail);
  }
  return data;
}

function itemLabel(item) {
  const box = el("span", { className: "title" }, item.title || `item ${item.item_id}`);
  if (item.tags && item.tags.length) box.append(el("span", { className: "tags" }, item.tags.join(", ")));
  return box;
}

function ratingSelect(entry) {
  const [low, high] = state.model.rating_range;
  const select = el("select", { className: "rating", title: "rating" });
  for (let r = Math.ceil(low); r <= Math.floor(high); r++) select.append(el("option", { value: r }, String(r)));
  select.value = String(entry.rating);
  select.addEventListener("change", () => { entry.rating = Number(select.value); refresh(); });
  return select;
}

function renderBasket() {
  const list = $("basket");
  list.replaceChildren();
  for (const entry of state.basket) {
    const remove = el("button", { className: "small remove", type: "button" }, "remove");
    remove.addEventListener("click", () => {
      state.basket = state.basket.filter((e) => e !== entry);
      renderBasket();
      refresh();
    });
    const li = el("li", {}, itemLabel(entry.item));
    if (state.model.takes_ratings) li.append(ratingSelect(entry));
    li.append(remove);
    list.append(li);
  }
}

async function add(item) {
  if (state.mode === "user") {
    if (state.user === null) { $("status").textContent = "Pick a known user first."; return; }
    try {
      await api(`/users/${encodeURIComponent(state.user)}/interactions`, { items: [item.item_id] });
    } catch (error) { showError(error); return; }
    $("status").textContent = `Added ${item.title || item.item_id} to user ${state.user}'s interactions.`;
    refresh();
    return;
  }
  if (state.basket.some((e) => e.item.item_id === item.item_id)) return;
  const high = state.model.takes_ratings ? Math.floor(state.model.rating_range[1]) : null;
  state.basket.push({ item, rating: high });
  renderBasket();
  refresh();
}

function renderResults(items) {
  const list = $("results");
  list.replaceChildren();
  for (const item of items) {
    const button = el("button", { className: "small add", type: "button" }, "add");
    button.addEventListener("click", () => add(item));
    list.append(el("li", {}, itemLabel(item), button));
  }
}

let searchTimer = null;
function search() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const query = $("search").value;
    try {
      const data = await api(`/items?limit=10&query=${encodeURIComponent(query)}`);
      renderResults(data.items);
    } catch (error) { showError(error); }
  }, 120);
}

function showError(error) {
  $("status").replaceChildren(el("span", { className: "error" }, String(error.message || error)));
}

function renderRecs(answer) {
  const list = $("recs");
  list.replaceChildren();
  for (const rec of answer.items) {
    const label = itemLabel(rec);
    if (rec.because && rec.because.length) {
      label.append(el("span", { className: "why" }, "because of " + rec.because.map((b) => b.title || b.item_id).join(", ")));
    }
    const similar = el("button", { className: "small", type: "button", title: "similar items" }, "similar");
    similar.addEventListener("click", () => showSimilar(rec));
    const score = el("span", { className: "score" }, rec.score === null ? "-" : rec.score.toFixed(3));
    list.append(el("li", {}, label, score, similar));
  }
}

async function showSimilar(item) {
  try {
    const data = await api(`/items/${encodeURIComponent(item.item_id)}/similar?k=8`);
    $("similar-of").textContent = `${item.title || item.item_id} (${data.method})`;
    const list = $("similar");
    list.replaceChildren();
    for (const s of data.items) {
      const button = el("button", { className: "small add", type: "button" }, "add");
      button.addEventListener("click", () => add(s));
      list.append(el("li", {}, itemLabel(s), button));
    }
    $("similar-box").hidden = false;
  } catch (error) { showError(error); }
}

async function refresh() {
  const seq = ++state.seq;
  const body = { k: Number($("k").value), explain: true };
  if ($("tag").value) body.tag = $("tag").value;
  if (state.mode === "user") {
    if (state.user === null) return;
    body.user_id = state.user;
  } else {
    if (!state.basket.length) {
      $("recs").replaceChildren();
      $("status").textContent = "Add items to the basket, or pick a known user.";
      return;
    }
    body.items = state.basket.map((e) => e.item.item_id);
    if (state.model.takes_ratings) body.ratings = state.basket.map((e) => e.rating);
  }
  try {
    const answer = await api("/recommend", body);
    if (seq !== state.seq) return; // a newer request was sent meanwhile
    const who = state.mode === "user" ? `user ${answer.user_id}` : `a basket of ${answer.history_size}`;
    $("status").textContent = `${answer.items.length} recommendations for ${who}` +
      (answer.folded_in ? " (folded in from the history, no retraining)" : "");
    renderRecs(answer);
  } catch (error) {
    if (seq === state.seq) { $("recs").replaceChildren(); showError(error); }
  }
}

function setMode(mode) {
  state.mode = mode;
  $("user-box").hidden = mode !== "user";
  $("basket").hidden = $("basket-title").hidden = mode === "user";
  refresh();
}

async function start() {
  const model = state.model = await api("/model");
  $("model-name").textContent = `· ${model.model}`;
  const metrics = (model.metrics.test && model.metrics.test.metrics) || {};
  const shown = Object.entries(metrics).slice(0, 3).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(", ");
  $("model-summary").textContent = `${model.dataset || "?"}, ${model.n_items} items, ${model.n_users} users` +
    (shown ? ` · test ${shown}` : "");
  for (const tag of model.tags) $("tag").append(el("option", { value: tag }, tag));
  for (const user of model.example_users) {
    const link = el("a", { href: "#" }, String(user));
    link.addEventListener("click", (event) => { event.preventDefault(); $("user").value = user; useUser(); });
    $("example-users").append(link, " ");
  }
  $("search").addEventListener("input", search);
  $("clear").addEventListener("click", () => { state.basket = []; renderBasket(); refresh(); });
  $("tag").addEventListener("change", refresh);
  $("k").addEventListener("change", refresh);
  $("use-user").addEventListener("click", useUser);
  $("user").addEventListener("keydown", (event) => { if (event.key === "Enter") useUser(); });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => setMode(radio.value));
  }
  search();
}

function useUser() {
  const text = $("user").value.trim();
  state.user = text === "" ? null : text;
  refresh();
}

start().catch(showError);
