// The console works without JavaScript; this adds live updates, local times and the order form's total.
"use strict";

const LIVE_EVERY_MS = 2000;

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

// Refresh a part of the page from the server while the user is not typing or choosing in it.
function keepLive(container) {
  const url = container.dataset.live;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden || container.contains(document.activeElement)) return;
    busy = true;
    try {
      const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (response.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (response.ok) {
        const html = await response.text();
        if (html !== container.dataset.lastHtml) {
          container.dataset.lastHtml = html;
          const notices = keptNotices(container);
          container.innerHTML = html;
          restoreNotices(container, notices);
          showLocalTimes(container);
        }
      }
    } catch (error) {
      // A passing network failure: the next round tries again.
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, LIVE_EVERY_MS);
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
  for (const container of document.querySelectorAll("[data-live]")) keepLive(container);
  for (const form of document.querySelectorAll("[data-order-form]")) orderForm(form);
});
