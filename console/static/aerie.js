// Aerie console: progressive enhancement only; every page works without it.
(function () {
  document.documentElement.classList.add("js");
  // Mobile menu toggle.
  var toggle = document.querySelector(".menu-toggle");
  if (toggle) toggle.addEventListener("click", function () {
    var h = toggle.closest("header"), open = !h.classList.contains("open");
    h.classList.toggle("open", open); toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
  // The org switcher switches on change (the Switch button is for no-JS).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  // Copy buttons: <button data-copy="#id">.
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-copy]");
    if (!b) return;
    var el = document.querySelector(b.getAttribute("data-copy"));
    if (!el) return;
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      var old = b.textContent; b.textContent = "Copied"; setTimeout(function () { b.textContent = old; }, 1500);
    });
  });
  // Live regions: <div data-refresh="/url" data-every="5"> is re-fetched and replaced.
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var every = (parseInt(el.getAttribute("data-every"), 10) || 5) * 1000;
    setInterval(function () {
      if (document.hidden) return;
      fetch(el.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "X-Partial": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) el.innerHTML = html; });
    }, every);
  });
  // Typed confirmations: <input data-confirm="name" data-confirm-button="#btn">
  // keeps the button disabled until the exact name is typed (the server
  // checks it too).
  document.querySelectorAll("[data-confirm]").forEach(function (el) {
    var b = document.querySelector(el.getAttribute("data-confirm-button"));
    if (!b) return;
    var sync = function () { b.disabled = el.value.trim() !== el.getAttribute("data-confirm"); };
    el.addEventListener("input", sync); sync();
  });
})();
