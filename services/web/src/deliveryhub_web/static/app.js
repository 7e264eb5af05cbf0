// The console works without JavaScript; this adds live updates, local times, the couriers' loads in
// every picker and the order form's total.
"use strict";

function showLocalTimes(root) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    const date = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(date.getTime())) {
      element.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  }
}

// An error shown next to an item (or above the list) stays when the list around it is refreshed.
function keptNotices(container) {
  const kept = [];
  for (const notice of container.querySelectorAll(".notice-kept.notice-error")) {
    const card = notice.closest("[id]");
    kept.push([card && container.contains(card) ? card.id : null, notice]);
  }
  return kept;
}

function restoreNotices(container, kept) {
  for (const [id, notice] of kept.reverse()) {
    const card = id ? document.getElementById(id) : null;
    if (card && container.contains(card)) {
      if (!card.querySelector(".notice-kept")) card.insertBefore(notice, card.querySelector(".actions"));
    } else if (!id) {
      container.prepend(notice);
    }
  }
}

// The couriers' loads, shown in the bulk picker, are shown in every card's picker too.
function showCourierLoads(root) {
  const loads = new Map();
  for (const option of root.querySelectorAll("select[data-courier-loads] option")) loads.set(option.value, option.textContent);
  for (const option of root.querySelectorAll("select[data-courier-picker] option")) {
    if (loads.has(option.value)) option.textContent = loads.get(option.value);
  }
}

function fromHtml(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

// Live updates: the server sends the parts and items of the page that changed, and only those
// (server-sent events). Where the stream is cut, the page refreshes itself slowly, and says so.
const SLOW_REFRESH_MS = 30000;
const RECONNECT_MS = [500, 2000, 5000, 10000, 30000];

function keepLive(container) {
  const deferred = new Map(); // element -> what to do once the user is no longer in it
  let source = null;
  let failures = 0;
  let slowTimer = null;

  // What the user is in (a picker open, a box ticked) is replaced only once they leave it.
  function whenFree(element, apply) {
    if (element.contains(document.activeElement)) deferred.set(element, apply);
    else apply();
  }
  container.addEventListener("focusout", () => {
    setTimeout(() => {
      for (const [element, apply] of deferred) {
        if (!element.contains(document.activeElement)) {
          deferred.delete(element);
          apply();
        }
      }
    }, 0);
  });

  // The new item keeps what the user did to the old one: the box ticked, the outcome of their
  // last action shown next to it.
  function carried(old, made) {
    if (!old) return made;
    const picked = old.querySelector("input.pick");
    const pick = made.querySelector("input.pick");
    if (picked && pick) pick.checked = picked.checked;
    const outcome = old.querySelector(".notice-kept");
    if (outcome && !made.querySelector(".notice-kept")) made.insertBefore(outcome, made.querySelector(".actions"));
    return made;
  }

  function applyPatch(patch) {
    container.dataset.digest = patch.digest;
    for (const [name, html] of Object.entries(patch.parts)) {
      for (const part of container.querySelectorAll(`[data-part="${name}"]`)) {
        whenFree(part, () => { part.innerHTML = html; });
      }
    }
    for (const [name, change] of Object.entries(patch.lists)) {
      const list = container.querySelector(`[data-items="${name}"]`);
      if (!list) continue;
      const old = new Map([...list.children].filter((element) => element.id).map((element) => [element.id, element]));
      const made = (id) => (id in change.items ? carried(old.get(id), fromHtml(change.items[id])) : old.get(id));
      if (change.order) {
        list.replaceChildren(...change.order.map(made).filter(Boolean));
      } else {
        for (const id of Object.keys(change.items)) {
          const element = old.get(id);
          if (element) whenFree(element, () => element.replaceWith(made(id)));
        }
      }
    }
    showLocalTimes(container);
    showCourierLoads(container);
  }

  function notice(shown) {
    let element = container.querySelector(":scope > [data-live-notice]");
    if (shown && !element) {
      element = document.createElement("p");
      element.className = "notice notice-warning";
      element.setAttribute("role", "status");
      element.dataset.liveNotice = "";
      element.textContent = "Live updates are paused: this list refreshes every 30 seconds until they are back.";
      container.prepend(element);
    } else if (!shown && element) {
      element.remove();
    }
  }

  async function refresh() {
    if (document.hidden || container.contains(document.activeElement)) return;
    try {
      const response = await fetch(container.dataset.live, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (response.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (response.ok) {
        const html = await response.text();
        const kept = keptNotices(container);
        container.innerHTML = html;
        container.dataset.digest = response.headers.get("X-Live-Digest") || "";
        restoreNotices(container, kept);
        notice(true);
        showLocalTimes(container);
        showCourierLoads(container);
      }
    } catch (error) {
      // A passing network failure: the next round tries again.
    }
  }

  function connect() {
    const url = new URL(container.dataset.liveStream, window.location.href);
    url.searchParams.set("digest", container.dataset.digest || "");
    source = new EventSource(url);
    source.addEventListener("open", () => {
      container.dataset.liveState = "open";
      failures = 0;
      clearInterval(slowTimer);
      slowTimer = null;
      notice(false);
    });
    source.addEventListener("patch", (event) => applyPatch(JSON.parse(event.data)));
    source.addEventListener("signed-out", (event) => window.location.assign(JSON.parse(event.data).location));
    source.addEventListener("error", () => {
      source.close();
      container.dataset.liveState = "closed";
      // A stream that ends (the server restarts, or renews it) is taken up again at once; one
      // that cannot be had is said so, and the page refreshes itself slowly meanwhile.
      if (failures > 0 && slowTimer === null) {
        notice(true);
        slowTimer = setInterval(refresh, SLOW_REFRESH_MS);
      }
      setTimeout(connect, RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)]);
      failures += 1;
    });
  }
  connect();
}

function orderForm(form) {
  const items = form.querySelector("[data-items]");
  const total = form.querySelector("[data-total]");
  const offset = form.querySelector("[data-timezone-offset]");
  const dateInput = form.querySelector("input[name=date]");

  function updateTotal() {
    let cents = 0;
    for (const row of items.querySelectorAll("[data-item]")) {
      const quantity = parseInt(row.querySelector("[name=item_quantity]").value, 10);
      const price = parseFloat(row.querySelector("[name=item_price]").value);
      if (quantity > 0 && price >= 0) cents += Math.round(price * 100) * quantity;
    }
    total.textContent = (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function updateOffset() {
    const chosen = dateInput.value ? new Date(dateInput.value) : new Date();
    offset.value = String(chosen.getTimezoneOffset());
  }

  form.querySelector("[data-add-item]").addEventListener("click", () => {
    const row = items.querySelector("[data-item]").cloneNode(true);
    for (const input of row.querySelectorAll("input")) input.value = input.name === "item_quantity" ? "1" : "";
    items.append(row);
    row.querySelector("input").focus();
    updateTotal();
  });
  items.addEventListener("click", (event) => {
    const remove = event.target.closest("[data-remove-item]");
    if (remove && items.querySelectorAll("[data-item]").length > 1) {
      remove.closest("[data-item]").remove();
      updateTotal();
    }
  });
  form.addEventListener("input", updateTotal);
  dateInput.addEventListener("change", updateOffset);
  updateOffset();
  updateTotal();
}

document.addEventListener("DOMContentLoaded", () => {
  showLocalTimes(document);
  showCourierLoads(document);
  for (const container of document.querySelectorAll("[data-live-stream]")) keepLive(container);
  for (const form of document.querySelectorAll("[data-order-form]")) orderForm(form);
});
