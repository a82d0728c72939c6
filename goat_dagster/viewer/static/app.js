// goat view: the little script the pages use. Everything works without it.
(function () {
  "use strict";
  // a filter <select> applies as soon as it changes
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { if (el.form) el.form.submit(); });
  });
  // "expand all" / "collapse all" for the long outputs of a transcript
  document.querySelectorAll("button[data-toggle-details]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var open = btn.textContent.indexOf("expand") === 0;
      document.querySelectorAll("main details").forEach(function (d) { d.open = open; });
      btn.textContent = open ? "collapse all" : "expand all";
    });
  });
  // j / k: next / previous task of the run (as the links at the top say)
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || (t && /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName))) return;
    var rel = ev.key === "j" ? "next" : ev.key === "k" ? "prev" : null;
    var link = rel && document.querySelector('a[rel="' + rel + '"]');
    if (link) window.location.href = link.href;
  });
})();
