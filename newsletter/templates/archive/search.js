// Archive search: lunr.js (lunr.min.js) over the index built with the archive
// (search-index.js: window.NEWSLETTER_SEARCH = {index, docs}). Both are loaded by <script>
// tags, beside this file, so search works from file:// and under any sub-path, and only once
// the reader starts to search: the index holds every issue's text, several MB for a long
// archive, which a reader who only browses never downloads. Every word must match; the last
// one may be the start of a word, for results while typing. Results are ranked by lunr (a
// title or topic outweighs the body) and show the passage where the words occur. Without
// JavaScript the form stays hidden and the full list below it is the archive.
(function () {
  "use strict";
  var form = document.getElementById("search"), here = document.currentScript.src;
  if (!form) return;
  var data = null, index = null, loading = false;
  var input = document.getElementById("search-input");
  var results = document.getElementById("search-results");
  var status = document.getElementById("search-status");
  var BEFORE = 90, AFTER = 160, LIMIT = 50;

  function search(text) {
    var words = lunr.tokenizer(text).map(String).filter(Boolean);
    if (!words.length) return null;
    // Stop words ("the", "of") are not in the index: required, they would match nothing. The
    // last word stays: it may be the start of a longer one.
    words = words.filter(function (w, i) {
      return i === words.length - 1 || lunr.stopWordFilter(w) !== undefined;
    });
    return index.query(function (q) {
      words.forEach(function (word, i) {
        var required = lunr.Query.presence.REQUIRED;
        if (i < words.length - 1) {
          q.term(word, {presence: required});
        } else {
          // lunr would stem "listening*" as a whole: stem first, then add the wildcard.
          var stem = lunr.stemmer(new lunr.Token(word)).toString();
          q.term(stem, {presence: required, usePipeline: false,
                        wildcard: lunr.Query.wildcard.TRAILING});
        }
      });
    });
  }

  // The body's first stretch holding a matched word: [start, end, [[from, to], ...]].
  function passage(text, terms) {
    var hits = [], span = null;
    var tokens = lunr.tokenizer(text);
    for (var i = 0; i < tokens.length; i++) {
      var stem = lunr.stemmer(tokens[i].clone()).toString();
      if (!terms[stem]) continue;
      var at = tokens[i].metadata.position;
      if (!span) {
        var start = Math.max(0, at[0] - BEFORE);
        if (start > 0) start = text.indexOf(" ", start) + 1;
        span = [start, Math.min(text.length, at[0] + at[1] + AFTER)];
      }
      if (at[0] + at[1] > span[1]) break;
      hits.push([at[0], at[0] + at[1]]);
    }
    if (!span) return null;
    var end = span[1] < text.length ? text.lastIndexOf(" ", span[1]) : span[1];
    return [span[0], Math.max(end, hits[hits.length - 1][1]), hits];
  }

  function passageElement(text, found) {
    var p = document.createElement("p"), start = found[0], end = found[1], at = start;
    p.className = "passage";
    if (start > 0) p.appendChild(document.createTextNode("\u2026 "));
    found[2].forEach(function (hit) {
      p.appendChild(document.createTextNode(text.slice(at, hit[0])));
      var mark = document.createElement("mark");
      mark.textContent = text.slice(hit[0], hit[1]);
      p.appendChild(mark);
      at = hit[1];
    });
    p.appendChild(document.createTextNode(text.slice(at, end)));
    if (end < text.length) p.appendChild(document.createTextNode(" \u2026"));
    return p;
  }

  function load(name, then) {
    var script = document.createElement("script");
    script.src = new URL(name, here).href;
    script.onload = then;
    script.onerror = function () { status.textContent = "Search could not be loaded."; };
    document.head.appendChild(script);
  }

  // Loads lunr.js and the index on first use, then searches whatever is typed by then.
  function ready(then) {
    if (index) { then(); return; }
    if (loading) return;
    loading = true;
    status.textContent = "Loading the search\u2026";
    load("lunr.min.js", function () {
      load("search-index.js", function () {
        data = window.NEWSLETTER_SEARCH;
        index = lunr.Index.load(data.index);
        show();
      });
    });
  }

  function show() {
    if (!index) { ready(show); return; }
    var found = search(input.value);
    results.textContent = "";
    if (!found) { status.textContent = ""; return; }
    found.slice(0, LIMIT).forEach(function (result) {
      var doc = data.docs[result.ref];
      var li = document.createElement("li"), h = document.createElement("h2");
      var a = document.createElement("a"), meta = document.createElement("p");
      a.href = result.ref; a.textContent = doc.t; h.className = "issue-title"; h.appendChild(a);
      meta.className = "meta"; meta.textContent = "No. " + doc.n + " \u00b7 " + doc.d;
      li.appendChild(h); li.appendChild(meta);
      var hit = passage(doc.x, result.matchData.metadata);
      if (hit) {
        li.appendChild(passageElement(doc.x, hit));
      } else if (doc.s) {
        var p = document.createElement("p"); p.textContent = doc.s; li.appendChild(p);
      }
      results.appendChild(li);
    });
    status.textContent = found.length === 1 ? "1 issue found" : found.length + " issues found";
  }

  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); show(); });
  input.addEventListener("input", show);
  input.addEventListener("focus", function () { ready(function () {}); });
})();
