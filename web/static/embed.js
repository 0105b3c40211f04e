/*
 * link-archiver embed script: Robust Links for a blog's outbound links.
 *
 *   <script src="https://archive.example/embed.js" data-archive="https://archive.example" defer></script>
 *
 * Finds the page's outbound links (optionally only inside data-scope, a CSS selector), asks the
 * archive's /api/refs which of them have an archived copy, and gives each archived link the
 * Robust Links attributes data-originalurl, data-versionurl and data-versiondate. A dead link
 * (also a failing one with data-show="failing") gets a visible "[archived]" link to its copy
 * right after it (text from data-label). No dependencies, no cookies, no requests anywhere but
 * the archive; any failure leaves the page as it was.
 */
(function () {
  "use strict";

  var MAX_URLS = 200; // the API's limit per request
  var MAX_QUERY = 6000; // characters of query string per request, well below server limits
  var COPY_CLASS = "archiver-copy";

  function settings(script) {
    var data = script.dataset || {};
    var archive = data.archive || new URL(script.src, location.href).origin;
    return {
      archive: archive.replace(/\/+$/, ""),
      scope: data.scope || "",
      label: data.label || "[archived]",
      show: (data.show || "dead").split(/[\s,]+/),
    };
  }

  function outboundLinks(config) {
    var roots = config.scope ? document.querySelectorAll(config.scope) : [document];
    var archiveHost = new URL(config.archive, location.href).host;
    var byUrl = new Map();
    for (var r = 0; r < roots.length; r++) {
      var anchors = roots[r].querySelectorAll("a[href]");
      for (var i = 0; i < anchors.length; i++) {
        var a = anchors[i];
        if (a.classList.contains(COPY_CLASS)) continue;
        var url;
        try {
          url = new URL(a.href, location.href);
        } catch (e) {
          continue;
        }
        if (url.protocol !== "http:" && url.protocol !== "https:") continue;
        if (url.host === location.host || url.host === archiveHost) continue;
        url.hash = "";
        var key = url.href;
        if (!byUrl.has(key)) byUrl.set(key, []);
        if (byUrl.get(key).indexOf(a) < 0) byUrl.get(key).push(a);
      }
    }
    return byUrl;
  }

  function batches(urls) {
    var out = [];
    var current = [];
    var length = 0;
    urls.forEach(function (url) {
      var cost = encodeURIComponent(url).length + 5;
      if (current.length && (current.length >= MAX_URLS || length + cost > MAX_QUERY)) {
        out.push(current);
        current = [];
        length = 0;
      }
      current.push(url);
      length += cost;
    });
    if (current.length) out.push(current);
    return out;
  }

  function lookup(config, urls) {
    var query = new URLSearchParams();
    urls.forEach(function (url) { query.append("url", url); });
    return fetch(config.archive + "/api/refs?" + query.toString(), {
      method: "GET",
      mode: "cors",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) return [];
      return response.json().then(function (body) {
        return body && Array.isArray(body.items) ? body.items : [];
      });
    });
  }

  function linkText(a) {
    var text = (a.textContent || "").replace(/\s+/g, " ").trim();
    if (!text) {
      var img = a.querySelector("img[alt]");
      text = (img && img.getAttribute("alt")) || a.getAttribute("aria-label") || a.title || a.host;
    }
    return text;
  }

  function alreadyOffered(a, href) {
    var next = a.nextElementSibling;
    return !!next && next.classList.contains(COPY_CLASS) && next.getAttribute("href") === href;
  }

  function offerCopy(config, a, href, date) {
    if (alreadyOffered(a, href)) return;
    var copy = document.createElement("a");
    copy.className = COPY_CLASS;
    copy.href = href;
    copy.rel = "noopener";
    copy.textContent = config.label;
    copy.title = date ? "Archived copy, " + date : "Archived copy";
    copy.setAttribute("aria-label", "Archived copy of " + linkText(a));
    copy.style.fontSize = "0.85em";
    var parent = a.parentNode;
    parent.insertBefore(copy, a.nextSibling);
    parent.insertBefore(document.createTextNode(" "), copy);
  }

  function apply(config, anchorsByUrl, items) {
    var count = 0;
    items.forEach(function (item) {
      if (!item || !item.archived_url) return;
      var anchors = anchorsByUrl.get(item.url) || [];
      var date = typeof item.archived_at === "string" ? item.archived_at.slice(0, 10) : "";
      anchors.forEach(function (a) {
        a.setAttribute("data-originalurl", a.href);
        a.setAttribute("data-versionurl", item.archived_url);
        if (date) a.setAttribute("data-versiondate", date);
        if (config.show.indexOf(item.state) >= 0 || item.state === "dead") {
          offerCopy(config, a, item.archived_url, date);
        }
        count++;
      });
    });
    return count;
  }

  function run(config) {
    var anchorsByUrl = outboundLinks(config);
    var urls = Array.from(anchorsByUrl.keys());
    if (!urls.length) return;
    var requests = batches(urls).map(function (batch) {
      return lookup(config, batch).then(function (items) {
        try {
          return apply(config, anchorsByUrl, items);
        } catch (e) {
          return 0;
        }
      }, function () {
        return 0; // offline, blocked or the archive is down: leave the page as it is
      });
    });
    Promise.all(requests).then(function (counts) {
      var total = counts.reduce(function (a, b) { return a + b; }, 0);
      try {
        document.dispatchEvent(new CustomEvent("archiver:done", { detail: { archived: total } }));
      } catch (e) { /* nothing */ }
    }).catch(function () { /* nothing */ });
  }

  try {
    var script = document.currentScript;
    if (!script || typeof fetch !== "function" || typeof URLSearchParams !== "function") return;
    var config = settings(script);
    var start = function () {
      try {
        run(config);
      } catch (e) { /* never break the page */ }
    };
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start, { once: true });
    } else {
      start();
    }
  } catch (e) { /* never break the page */ }
})();
