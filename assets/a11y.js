/* Neuron Atlas dashboard: keyboard and screen-reader semantics that Dash's components do not give by themselves.
 * - dcc.Tabs render plain divs: they become a tablist of tabs (focusable, aria-selected), Enter or Space opens a
 *   tab, the arrow keys, Home and End move between tabs and open the one reached.
 * - Controls inside a labelled `.control` box (sliders, dropdowns, number boxes) get that label as their name.
 * - Plotly's chart toolbars leave the tab order (they stay clickable), so Tab moves between the page's own controls.
 * Applied again whenever Dash redraws part of the page. */
(function () {
  "use strict";

  var FOCUSABLE = "input:not([type=hidden]), textarea, select, [role=slider], [role=combobox], button";

  function labelText(control) {
    var label = control.querySelector(":scope > .control-label");
    return label ? label.textContent.trim() : "";
  }

  function nameControls(root) {
    root.querySelectorAll(".control").forEach(function (control) {
      var name = labelText(control);
      if (!name) { return; }
      control.querySelectorAll(FOCUSABLE).forEach(function (el) {
        if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")) { return; }
        if (el.id && control.querySelector("label[for='" + el.id + "']")) { return; }
        var extra = el.getAttribute("role") === "slider" && el.parentElement &&
          el.parentElement.querySelectorAll("[role=slider]").length > 1 ? " (" + (Array.prototype.indexOf.call(
            el.parentElement.querySelectorAll("[role=slider]"), el) + 1) + ")" : "";
        el.setAttribute("aria-label", name + extra);
      });
    });
  }

  function tabsOf(list) {
    return Array.prototype.slice.call(list.querySelectorAll(":scope > .tab"));
  }

  function open(tab) {
    tab.click();
    tab.focus();
  }

  function onTabKey(event) {
    var tab = event.currentTarget;
    var tabs = tabsOf(tab.parentElement);
    var i = tabs.indexOf(tab);
    var next = null;
    if (event.key === "Enter" || event.key === " ") { next = tab; }
    else if (event.key === "ArrowRight") { next = tabs[(i + 1) % tabs.length]; }
    else if (event.key === "ArrowLeft") { next = tabs[(i - 1 + tabs.length) % tabs.length]; }
    else if (event.key === "Home") { next = tabs[0]; }
    else if (event.key === "End") { next = tabs[tabs.length - 1]; }
    if (next) {
      event.preventDefault();
      open(next);
    }
  }

  function markTabs(root) {
    root.querySelectorAll(".tab-container").forEach(function (list) {
      list.setAttribute("role", "tablist");
      tabsOf(list).forEach(function (tab) {
        var selected = tab.classList.contains("tab--selected");
        tab.setAttribute("role", "tab");
        tab.setAttribute("aria-selected", selected ? "true" : "false");
        tab.setAttribute("tabindex", selected ? "0" : "-1");
        if (!tab.dataset.atlasKeys) {
          tab.dataset.atlasKeys = "1";
          tab.addEventListener("keydown", onTabKey);
        }
      });
      if (!list.querySelector(":scope > .tab[tabindex='0']")) {
        var first = tabsOf(list)[0];
        if (first) { first.setAttribute("tabindex", "0"); }
      }
    });
  }

  function quietToolbars(root) {
    root.querySelectorAll(".modebar-btn, .modebar a, .modebar button").forEach(function (el) {
      if (el.getAttribute("tabindex") !== "-1") { el.setAttribute("tabindex", "-1"); }
    });
  }

  var pending = false;
  function apply() {
    pending = false;
    markTabs(document);
    nameControls(document);
    quietToolbars(document);
  }

  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(apply);
    }
  }

  function start() {
    apply();
    new MutationObserver(schedule).observe(document.body, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["class"]
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
