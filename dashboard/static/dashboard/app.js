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
