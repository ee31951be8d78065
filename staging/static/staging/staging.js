// Small progressive enhancements for the scientists' pages; everything works without them.
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Fallback for plain-http deployments: a hidden textarea and execCommand.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
      } catch (err) {
        reject(err);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  function flash(button, text) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = text;
    setTimeout(function () { button.textContent = original; }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target], [data-copy-text]");
    if (!button) return;
    var text = button.dataset.copyText;
    if (text === undefined) {
      text = document.getElementById(button.dataset.copyTarget).value.trim();
    }
    copyText(text).then(
      function () { flash(button, "Copied ✓"); },
      function () { flash(button, "Select and copy by hand"); }
    );
  });

  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-check-all]");
    if (!all) return;
    var boxes = document.querySelectorAll('input[type=checkbox][name="' + all.dataset.checkAll + '"]');
    boxes.forEach(function (box) { box.checked = all.checked; });
  });

  // Pages with work under way update the parts that change ([data-live] regions) instead of
  // reloading: a region is replaced only when its content changed, so selecting or copying paths
  // elsewhere on the page is not interrupted. Polling stops when the server's page has no
  // data-refresh-seconds any more (the work is over). Without JavaScript nothing updates.
  function liveRefresh() {
    var main = document.querySelector("main[data-refresh-seconds]");
    if (!main || !window.fetch || !window.DOMParser) return;
    var seconds = Math.max(1, parseInt(main.dataset.refreshSeconds, 10) || 5);
    var timer = setInterval(function () {
      fetch(window.location.href, { headers: { "X-Live-Refresh": "1" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          fresh.querySelectorAll("[data-live]").forEach(function (region) {
            var current = document.querySelector('[data-live="' + region.dataset.live + '"]');
            if (current && current.innerHTML !== region.innerHTML) current.innerHTML = region.innerHTML;
          });
          if (!fresh.querySelector("main[data-refresh-seconds]")) clearInterval(timer);
        })
        .catch(function () { /* a missed update; the next one tries again */ });
    }, seconds * 1000);
  }
  liveRefresh();

  document.addEventListener("submit", function (event) {
    var message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
