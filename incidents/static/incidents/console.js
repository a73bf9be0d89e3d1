// The on-call console refreshes itself: every few seconds it fetches the
// same sections as an HTML fragment (/oncall/fragment/) and swaps them in.
// It holds off while the person is busy — a form field has focus, a note has
// text in it, or a timeline is open — so nothing typed or read is lost; focus
// and scroll position survive a swap. Without JavaScript the page has a
// "Refresh" link instead (a meta refresh would throw typed notes away).
(function () {
  "use strict";

  var live = document.getElementById("oncall-live");
  if (!live || !window.fetch || !window.DOMParser) return;
  var url = live.getAttribute("data-fragment-url");
  var seconds = parseInt(live.getAttribute("data-poll-seconds"), 10) || 15;
  var timer = null;
  var inFlight = false;

  function say(text) {
    var status = live.querySelector("[data-poll-status]");
    if (status && status.textContent !== text) status.textContent = text;
  }

  // Why not to swap now, or "" when it is safe.
  function busy() {
    var active = document.activeElement;
    if (active && live.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return "paused while you type";
    }
    var fields = live.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value.trim()) return "paused: a note is waiting to be sent";
    }
    if (live.querySelector("details[open]")) return "paused while a timeline is open";
    return "";
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-oncall-sections]");
    if (!fresh) return false;
    var active = document.activeElement;
    var focusId = active && live.contains(active) ? active.id : "";
    var x = window.scrollX;
    var y = window.scrollY;
    while (live.firstChild) live.removeChild(live.firstChild);
    live.appendChild(document.importNode(fresh, true));
    if (focusId) {
      var again = document.getElementById(focusId);
      if (again) again.focus({ preventScroll: true });
    }
    window.scrollTo(x, y);
    if (fresh.getAttribute("data-title")) document.title = fresh.getAttribute("data-title");
    return true;
  }

  function poll() {
    timer = null;
    if (document.hidden || inFlight) return schedule();
    var reason = busy();
    if (reason) {
      say(reason);
      return schedule();
    }
    inFlight = true;
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        // A redirect means the session ended: the login page is not a fragment.
        if (response.redirected) throw new Error("your session has ended; use Refresh to log in again");
        if (!response.ok) throw new Error("the server answered " + response.status + "; retrying");
        return response.text();
      })
      .then(function (html) {
        if (busy()) return; // the person started something while we were fetching
        if (!swap(html)) throw new Error("the answer was not the console; retrying");
        say("refreshes every " + seconds + " s");
      })
      .catch(function (error) {
        say("could not refresh: " + (error && error.message ? error.message : "offline?"));
      })
      .then(function () {
        inFlight = false;
        schedule();
      });
  }

  function schedule() {
    if (timer === null) timer = window.setTimeout(poll, seconds * 1000);
  }

  document.addEventListener("visibilitychange", function () {
    // Back on the page (phone unlocked at 3 a.m.): show what is true now.
    if (!document.hidden && timer !== null && !inFlight) {
      window.clearTimeout(timer);
      poll();
    }
  });

  say("refreshes every " + seconds + " s");
  schedule();
})();
