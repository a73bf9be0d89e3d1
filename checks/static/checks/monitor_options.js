"use strict";
// Shows the options help of the kind chosen in the monitor form, and that
// kind's example target as the target box's placeholder. The help for every
// kind is rendered server side (checks/probes/docs.py); this only switches it.
(function () {
  function show(select, help) {
    let chosen = null;
    for (const doc of help.querySelectorAll("[data-kind]")) {
      const match = doc.dataset.kind === select.value;
      doc.hidden = !match;
      if (match) chosen = doc;
    }
    const target = document.getElementById(select.id.replace(/kind$/, "target"));
    if (target && chosen) {
      target.placeholder = chosen.dataset.targetExample || "";
    }
  }

  function init() {
    for (const help of document.querySelectorAll(".wp-kind-help")) {
      const select = document.getElementById(help.dataset.kindField);
      if (!select) continue;
      select.addEventListener("change", function () { show(select, help); });
      show(select, help);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
