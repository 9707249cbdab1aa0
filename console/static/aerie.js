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
        .then(function (html) {
          if (html === null) return;
          el.innerHTML = html;
          el.dispatchEvent(new CustomEvent("aerie:refreshed", { bubbles: true }));
        });
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
  // Chart axis labels are placed from data attributes (the CSP allows no
  // inline styles); run again after each live refresh.
  function placeLabels(root) {
    root.querySelectorAll("[data-top]").forEach(function (el) { el.style.top = el.getAttribute("data-top"); });
    root.querySelectorAll("[data-left]").forEach(function (el) { el.style.left = el.getAttribute("data-left"); });
  }
  placeLabels(document);
  document.addEventListener("aerie:refreshed", function (e) { placeLabels(e.target); });
  // Chart hover: the nearest point's time and values (delegated, so it
  // survives the live refresh).
  function chartHover(e) {
    var plot = e.target.closest && e.target.closest(".chart-plot");
    if (!plot) return;
    var times = (plot.getAttribute("data-times") || "").split("|");
    if (times.length === 0 || times[0] === "") return;
    var r = plot.getBoundingClientRect();
    var x = (e.touches ? e.touches[0].clientX : e.clientX) - r.left;
    var n = times.length, i = n === 1 ? 0 : Math.round(x / r.width * (n - 1));
    i = Math.max(0, Math.min(n - 1, i));
    var tip = plot.querySelector(".chart-tip"), cur = plot.querySelector(".chart-cursor");
    if (!cur) { cur = document.createElement("div"); cur.className = "chart-cursor"; plot.appendChild(cur); }
    var px = n === 1 ? 0 : i / (n - 1) * r.width;
    cur.style.left = px + "px"; cur.hidden = false;
    var lines = [times[i]];
    plot.querySelectorAll("data[data-series]").forEach(function (d) {
      lines.push(d.getAttribute("data-series") + ": " + d.value.split("|")[i]);
    });
    tip.textContent = lines.join(" · ");
    tip.hidden = false;
    var left = Math.min(Math.max(px - tip.offsetWidth / 2, 0), r.width - tip.offsetWidth);
    tip.style.left = Math.max(left, 0) + "px";
  }
  document.addEventListener("mousemove", chartHover);
  document.addEventListener("touchstart", chartHover, { passive: true });
  document.addEventListener("mouseout", function (e) {
    var plot = e.target.closest && e.target.closest(".chart-plot");
    if (!plot || plot.contains(e.relatedTarget)) return;
    var tip = plot.querySelector(".chart-tip"), cur = plot.querySelector(".chart-cursor");
    if (tip) tip.hidden = true; if (cur) cur.hidden = true;
  });
  // Destructive forms (data-confirm-submit="what happens") ask first, in
  // the page: the button gives way to the message, "Yes" and "Cancel".
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (!f.hasAttribute || !f.hasAttribute("data-confirm-submit") || f.getAttribute("data-confirmed") === "1") return;
    e.preventDefault();
    if (f.querySelector(".confirm-ask")) return;
    var btn = f.querySelector("button[type=submit]");
    var ask = document.createElement("span");
    ask.className = "confirm-ask"; ask.setAttribute("role", "alert"); ask.setAttribute("data-testid", "confirm-ask");
    var msg = document.createElement("span"); msg.textContent = f.getAttribute("data-confirm-submit") + " ";
    var yes = document.createElement("button"); yes.type = "button"; yes.className = "danger"; yes.textContent = "Yes, " + btn.textContent.trim().toLowerCase();
    yes.setAttribute("data-testid", "confirm-yes");
    var no = document.createElement("button"); no.type = "button"; no.className = "secondary"; no.textContent = "Cancel";
    yes.addEventListener("click", function () { f.setAttribute("data-confirmed", "1"); f.submit(); });
    no.addEventListener("click", function () { ask.remove(); btn.hidden = false; btn.focus(); });
    ask.append(msg, yes, " ", no);
    btn.hidden = true; f.appendChild(ask); yes.focus();
  });
})();
