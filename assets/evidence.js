// Token strips of the unit page (app/components/evidence.py): each `.token-strip[data-strip]` carries its tokens,
// classes, tooltips and colours as JSON and is drawn here, one DOM fragment per strip. A Dash component per token
// would be thousands of components per page of examples, which Dash's renderer takes minutes to mount.
(function () {
  "use strict";

  function draw(el) {
    const raw = el.getAttribute("data-strip");
    if (!raw || el.__atlasDrawn === raw) return;
    el.__atlasDrawn = raw;
    let d;
    try { d = JSON.parse(raw); } catch (e) { return; }
    const frag = document.createDocumentFragment();
    d.tokens.forEach(function (text, i) {
      const span = document.createElement("span");
      span.className = d.classes[i];
      span.textContent = text;
      span.title = d.tips[i];
      span.style.backgroundColor = d.colours[i];
      frag.appendChild(span);
    });
    el.replaceChildren(frag);
  }

  function scan(node) {
    if (node.nodeType !== 1) return;
    if (node.matches(".token-strip[data-strip]")) draw(node);
    node.querySelectorAll(".token-strip[data-strip]").forEach(draw);
  }

  function start() {
    new MutationObserver(function (mutations) {
      mutations.forEach(function (m) {
        if (m.type === "attributes") draw(m.target);
        else m.addedNodes.forEach(scan);
      });
    }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["data-strip"]});
    scan(document.body);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
