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
          var detail = {};
          el.dispatchEvent(new CustomEvent("aerie:before-refresh", { bubbles: true, detail: detail }));
          el.innerHTML = html;
          el.dispatchEvent(new CustomEvent("aerie:refreshed", { bubbles: true, detail: detail }));
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
  // Chart read-out: the time and values of one point, shown on hover (the
  // nearest point) and from the keyboard (the plot is focusable: arrow
  // keys step through the points, Home/End jump; the read-out is a status
  // region, so screen readers announce it). Delegated, so it survives the
  // live refresh.
  function chartTimes(plot) {
    var t = (plot.getAttribute("data-times") || "").split("|");
    return t.length === 1 && t[0] === "" ? [] : t;
  }
  function showPoint(plot, i) {
    var times = chartTimes(plot), n = times.length;
    if (n === 0) return;
    i = Math.max(0, Math.min(n - 1, i));
    plot.setAttribute("data-i", String(i));
    var w = plot.getBoundingClientRect().width;
    var tip = plot.querySelector(".chart-tip"), cur = plot.querySelector(".chart-cursor");
    if (!cur) { cur = document.createElement("div"); cur.className = "chart-cursor"; plot.appendChild(cur); }
    var px = n === 1 ? 0 : i / (n - 1) * w;
    cur.style.left = px + "px"; cur.hidden = false;
    var lines = [times[i]];
    plot.querySelectorAll("data[data-series]").forEach(function (d) {
      lines.push(d.getAttribute("data-series") + ": " + d.value.split("|")[i]);
    });
    tip.textContent = lines.join(" · ");
    tip.hidden = false;
    var left = Math.min(Math.max(px - tip.offsetWidth / 2, 0), w - tip.offsetWidth);
    tip.style.left = Math.max(left, 0) + "px";
  }
  function hidePoint(plot) {
    var tip = plot.querySelector(".chart-tip"), cur = plot.querySelector(".chart-cursor");
    if (tip) tip.hidden = true; if (cur) cur.hidden = true;
    plot.removeAttribute("data-i");
  }
  function chartHover(e) {
    var plot = e.target.closest && e.target.closest(".chart-plot");
    if (!plot) {
      // Outside every plot: no read-out but the keyboard's (the plot under
      // the pointer may have been replaced by a refresh, without mouseout).
      document.querySelectorAll(".chart-plot[data-i]").forEach(function (p) {
        if (p !== document.activeElement) hidePoint(p);
      });
      return;
    }
    var n = chartTimes(plot).length, r = plot.getBoundingClientRect();
    var x = (e.touches ? e.touches[0].clientX : e.clientX) - r.left;
    showPoint(plot, n <= 1 ? 0 : Math.round(x / r.width * (n - 1)));
  }
  document.addEventListener("mousemove", chartHover);
  document.addEventListener("touchstart", chartHover, { passive: true });
  document.addEventListener("mouseout", function (e) {
    var plot = e.target.closest && e.target.closest(".chart-plot");
    if (!plot || plot.contains(e.relatedTarget) || plot === document.activeElement) return;
    hidePoint(plot);
  });
  document.addEventListener("focusin", function (e) {
    if (e.target.classList && e.target.classList.contains("chart-plot") && !e.target.hasAttribute("data-i")) {
      showPoint(e.target, chartTimes(e.target).length - 1);
    }
  });
  document.addEventListener("focusout", function (e) {
    if (e.target.classList && e.target.classList.contains("chart-plot")) hidePoint(e.target);
  });
  document.addEventListener("keydown", function (e) {
    var plot = e.target;
    if (!plot.classList || !plot.classList.contains("chart-plot")) return;
    var n = chartTimes(plot).length, i = parseInt(plot.getAttribute("data-i"), 10);
    if (isNaN(i)) i = n - 1;
    var step = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageUp: -10, PageDown: 10 }[e.key];
    if (e.key === "Home") i = 0; else if (e.key === "End") i = n - 1; else if (step) i += step; else if (e.key === "Escape") { hidePoint(plot); return; } else return;
    e.preventDefault();
    showPoint(plot, i);
  });
  // A live refresh replaces the charts: the point being read (hover or
  // keyboard) and the focus stay where they were.
  document.addEventListener("aerie:before-refresh", function (e) {
    var keep = [];
    e.target.querySelectorAll(".chart-plot[data-i]").forEach(function (p) {
      keep.push({ id: p.id, i: parseInt(p.getAttribute("data-i"), 10), focused: p === document.activeElement });
    });
    e.detail.keep = keep;
  });
  document.addEventListener("aerie:refreshed", function (e) {
    (e.detail && e.detail.keep || []).forEach(function (k) {
      var p = k.id && document.getElementById(k.id);
      if (!p) return;
      if (k.focused) { p.setAttribute("data-i", String(k.i)); p.focus({ preventScroll: true }); }
      showPoint(p, k.i);
    });
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
