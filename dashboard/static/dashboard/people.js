// Merge page: follow the operator's choice of survivor across the side-by-side table.
// Listens in the capture phase, so its changes are in place before htmx posts the form for the
// preview (htmx listens on the form, later in the same event).
(() => {
  const table = () => document.querySelector("[data-merge-table]");

  function cellsOf(root, profile) {
    return root.querySelectorAll(`[data-profile="${CSS.escape(profile)}"]`);
  }

  function followSurvivor(root, survivor) {
    root.querySelectorAll("[data-profile]").forEach((cell) => {
      cell.classList.toggle("is-survivor", cell.dataset.profile === survivor);
    });
    // The survivor takes part, and keeps its own userId when it has one (a merge cannot take
    // it away: its events would then name nobody).
    const include = root.querySelector(`input[name="include"][value="${CSS.escape(survivor)}"]`);
    if (include) include.checked = true;
    const idCell = root.querySelector(
      `tr[data-field="user_id"] td[data-profile="${CSS.escape(survivor)}"]`,
    );
    if (idCell && idCell.dataset.hasValue) {
      const radio = idCell.querySelector('input[type="radio"]');
      if (radio) radio.checked = true;
    }
    markExcluded(root);
  }

  function markExcluded(root) {
    root.querySelectorAll('input[name="include"]').forEach((box) => {
      cellsOf(root, box.value).forEach((cell) => {
        cell.classList.toggle("is-excluded", !box.checked);
      });
    });
  }

  document.addEventListener(
    "change",
    (event) => {
      const root = table();
      if (!root || !root.contains(event.target)) return;
      if (event.target.name === "survivor") followSurvivor(root, event.target.value);
      if (event.target.name === "include") markExcluded(root);
    },
    true,
  );

  document.addEventListener("DOMContentLoaded", () => {
    const root = table();
    if (root) markExcluded(root);
  });
})();
