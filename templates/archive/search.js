// Archive search: plain JavaScript over window.NEWSLETTER_SEARCH (search-index.js, loaded by
// a <script> tag so it also works from file://). Without JavaScript the form stays hidden
// and the full list below it is the archive.
(function () {
  "use strict";
  var index = window.NEWSLETTER_SEARCH, form = document.getElementById("search");
  if (!index || !form) return;
  var input = document.getElementById("search-input");
  var results = document.getElementById("search-results");
  var status = document.getElementById("search-status");
  var fold = function (s) { return s.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, ""); };
  var haystacks = index.map(function (e) { return fold([e.t, e.s, e.k, "no " + e.n].join(" ")); });
  function show() {
    var words = fold(input.value).split(/\s+/).filter(Boolean);
    results.textContent = "";
    if (!words.length) { status.textContent = ""; return; }
    var found = index.filter(function (e, i) {
      return words.every(function (w) { return haystacks[i].indexOf(w) !== -1; });
    });
    found.slice(0, 50).forEach(function (e) {
      var li = document.createElement("li"), h = document.createElement("h2");
      var a = document.createElement("a"), meta = document.createElement("p");
      a.href = e.u; a.textContent = e.t; h.className = "issue-title"; h.appendChild(a);
      meta.className = "meta"; meta.textContent = "No. " + e.n + " \u00b7 " + e.d;
      li.appendChild(h); li.appendChild(meta);
      if (e.s) { var p = document.createElement("p"); p.textContent = e.s; li.appendChild(p); }
      results.appendChild(li);
    });
    status.textContent = found.length === 1 ? "1 issue found" : found.length + " issues found";
  }
  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); show(); });
  input.addEventListener("input", show);
})();
