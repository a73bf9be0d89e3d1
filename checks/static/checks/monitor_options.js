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
    // A heartbeat's grace period is its tolerance: one missed deadline is down.
    // Only an untouched default is switched, never a value someone typed.
    const threshold = document.getElementById(select.id.replace(/kind$/, "failure_threshold"));
    if (threshold && !threshold.dataset.touched) {
      const wanted = select.value === "heartbeat" ? "1" : "2";
      if (threshold.value === "1" || threshold.value === "2") threshold.value = wanted;
    }
  }

  function init() {
    for (const help of document.querySelectorAll(".wp-kind-help")) {
      const select = document.getElementById(help.dataset.kindField);
      if (!select) continue;
      select.addEventListener("change", function () { show(select, help); });
      const threshold = document.getElementById(select.id.replace(/kind$/, "failure_threshold"));
      if (threshold) {
        threshold.addEventListener("input", function () { threshold.dataset.touched = "1"; });
      }
      show(select, help);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
