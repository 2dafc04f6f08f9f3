// Copy buttons: <button data-copy="#selector"> copies that element's text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = source.innerText;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context; fall back to selecting the text for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// Live fragments re-render while deliveries are in flight: keep the <details> an operator opened
// (and close the ones they closed) across the swap, matched by id.
const detailsState = new Map();
document.addEventListener("htmx:beforeSwap", (event) => {
  event.detail.target.querySelectorAll("details[id]").forEach((details) => {
    detailsState.set(details.id, details.open);
  });
});
document.addEventListener("htmx:afterSettle", () => {
  detailsState.forEach((open, id) => {
    const details = document.getElementById(id);
    if (details) details.open = open;
  });
  detailsState.clear();
});

// Condition editors (mapping rules, event filters): "Remove" takes its row away in place.
// Without JavaScript the same button submits the form, which comes back without the row.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-remove-row]");
  if (!button) return;
  const row = button.closest(".condition-row");
  const rows = row && row.parentElement;
  if (!row || !rows) return;
  event.preventDefault();
  if (rows.querySelectorAll(".condition-row").length > 1) {
    row.remove();
  } else {
    // The last row stays, emptied, so there is always one to type into.
    row.querySelectorAll("input").forEach((input) => { input.value = ""; });
    row.querySelector("select").selectedIndex = 0;
    row.classList.remove("invalid");
  }
});

// Copy a value shown in a readonly input (webhook URLs, tokens, signing secrets):
// <button data-copy-value="#input-id" hidden>. Without JavaScript the button stays hidden and the
// value is selectable in its input; with it, the button appears and copies.
function revealCopyButtons(root) {
  root.querySelectorAll("button[data-copy-value][hidden]").forEach((button) => {
    button.hidden = false;
  });
}
revealCopyButtons(document);
document.addEventListener("htmx:load", (event) => revealCopyButtons(event.target));
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy-value]");
  if (!button) return;
  const input = document.querySelector(button.dataset.copyValue);
  if (!input) return;
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // The Clipboard API needs a secure context: select the value and copy the old way.
    input.focus();
    input.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// Live lists that grow at the top (the source debugger): keep the newest rows only, as many as
// data-keep-rows says, so a page left open does not grow without end; and if a poll ever
// brings a row the list already has, keep the one already there (it may be open).
document.addEventListener("htmx:afterSwap", (event) => {
  const list = event.detail.target;
  const keep = Number(list && list.dataset ? list.dataset.keepRows : 0);
  if (!keep) return;
  const seen = new Set();
  [...list.children].reverse().forEach((row) => {
    if (!row.id) return;
    if (seen.has(row.id)) row.remove();
    else seen.add(row.id);
  });
  while (list.children.length > keep) list.lastElementChild.remove();
});

// The header's menu on narrow screens: the button appears, and opens and closes the menu.
const menuToggle = document.querySelector(".topbar .menu-toggle");
if (menuToggle) {
  const topbar = menuToggle.closest(".topbar");
  topbar.classList.add("collapsible");
  menuToggle.hidden = false;
  menuToggle.addEventListener("click", () => {
    const open = topbar.classList.toggle("open");
    menuToggle.setAttribute("aria-expanded", String(open));
  });
}
