/* Neuron Atlas dashboard: keyboard and screen-reader semantics that Dash's components do not give by themselves.
 * - dcc.Tabs render plain divs: they become a tablist of tabs (focusable, aria-selected), Enter or Space opens a
 *   tab, the arrow keys, Home and End move between tabs and open the one reached.
 * - Controls inside a labelled `.control` box (sliders, dropdowns, number boxes) get that label as their name; a
 *   radio button or checkbox keeps the text of its own option as its name.
 * - Dash's dropdown takes Tab through an aria-hidden input that hands the focus on to its button: the button itself
 *   takes the focus, and it is named by its control's label followed by the value shown.
 * - Plotly's chart toolbars leave the tab order (they stay clickable), so Tab moves between the page's own controls.
 * - Radio buttons (an open dropdown's choices included) sit in a radiogroup, checkboxes in a group, named by their
 *   control's label; AG Grid's empty row containers are not announced as row groups; Enter on a row of the layer
 *   grid opens that unit (as a click does).
 * - The header's unit search: "/" focuses it, ArrowDown moves into its results, ArrowUp/Down between them, Escape
 *   closes them.
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
        if (el.classList.contains("dash-dropdown-focus-target") || ownOptionText(el)) { return; }
        if (el.id && control.querySelector("label[for='" + el.id + "']")) { return; }
        var extra = el.getAttribute("role") === "slider" && el.parentElement &&
          el.parentElement.querySelectorAll("[role=slider]").length > 1 ? " (" + (Array.prototype.indexOf.call(
            el.parentElement.querySelectorAll("[role=slider]"), el) + 1) + ")" : "";
        el.setAttribute("aria-label", name + extra);
      });
    });
  }

  function ownOptionText(el) {
    /* A radio button or checkbox inside a <label> with text: that text is its name (a control-wide name would hide
       which option it is). */
    if (el.type !== "radio" && el.type !== "checkbox") { return false; }
    var label = el.closest("label");
    return !!(label && label.textContent.trim());
  }

  function labelId(control) {
    var label = control.querySelector(":scope > .control-label");
    if (!label || !label.textContent.trim()) { return ""; }
    if (!label.id) { label.id = "atlas-label-" + (++labelCount); }
    return label.id;
  }

  function focusDropdowns(root) {
    root.querySelectorAll(".dash-dropdown-wrapper").forEach(function (wrapper) {
      var proxy = wrapper.querySelector(":scope > .dash-dropdown-focus-target");
      var button = wrapper.querySelector(":scope > button.dash-dropdown");
      if (!proxy || !button) { return; }
      /* Dash resets the proxy's tabIndex when the button blurs: a disabled proxy stays out of the tab order. */
      proxy.disabled = true;
      if (button.getAttribute("tabindex") !== "0") { button.setAttribute("tabindex", "0"); }
      var control = wrapper.closest(".control");
      var id = control ? labelId(control) : "";
      var names = (button.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
      if (id && names.indexOf(id) < 0) { button.setAttribute("aria-labelledby", [id].concat(names).join(" ")); }
    });
  }

  function groupChoices(root) {
    /* Checklists, radio items and an open dropdown's list draw radio buttons or checkboxes inside labels marked
       role="option" of a role="listbox": an option may not hold a focusable control, and the focus goes to those
       controls, so the list becomes a radiogroup (or a group of checkboxes) of native, text-named controls. */
    root.querySelectorAll(".dash-options-list").forEach(function (group) {
      var radios = !!group.querySelector("input[type=radio]");
      if (!radios && !group.querySelector("input[type=checkbox]")) { return; }
      group.setAttribute("role", radios ? "radiogroup" : "group");
      group.querySelectorAll("[role=option]").forEach(function (opt) {
        opt.removeAttribute("role");
        opt.removeAttribute("aria-selected");
      });
      var control = group.closest(".control");
      var label = control ? labelId(control) : "";  /* Dash draws an open dropdown inside its wrapper */
      var dialog = group.closest(".dash-dropdown-content[role=dialog]");
      if (label && dialog && !dialog.getAttribute("aria-labelledby")) { dialog.setAttribute("aria-labelledby", label); }
      if (label && !group.getAttribute("aria-label") && !group.getAttribute("aria-labelledby")) {
        group.setAttribute("aria-labelledby", label);
      }
    });
  }

  function quietGridContainers(root) {
    root.querySelectorAll(".ag-full-width-container, .ag-sticky-top-viewport, .ag-sticky-top-full-width-container, " +
                          ".ag-sticky-bottom-viewport, .ag-sticky-bottom-full-width-container").forEach(function (el) {
      var empty = !el.querySelector("[role=row]");
      if (empty && el.getAttribute("role") !== "presentation") {
        el.dataset.atlasRole = el.getAttribute("role") || "";
        el.setAttribute("role", "presentation");
      } else if (!empty && el.dataset.atlasRole !== undefined) {
        el.setAttribute("role", el.dataset.atlasRole || "rowgroup");
        delete el.dataset.atlasRole;
      }
    });
  }

  function plainNumberBoxes(root) {
    /* autocomplete="off" (Dash's default) is meaningless on number and search boxes and flagged by checkers. */
    root.querySelectorAll("input[type=number][autocomplete], input[type=search][autocomplete]").forEach(function (el) {
      el.removeAttribute("autocomplete");
    });
  }

  function describeSearch(root) {
    var box = root.querySelector("#unit-search-q");
    if (box && !box.getAttribute("aria-describedby")) {
      box.setAttribute("aria-describedby", "unit-search-help");
      box.setAttribute("aria-controls", "unit-search-results");
    }
  }

  function onGridEnter(event) {
    if (event.key !== "Enter") { return; }
    var row = event.target.closest && event.target.closest(".layer-grid .ag-row");
    if (!row) { return; }
    var api = window.dash_ag_grid && window.dash_ag_grid.getApi("layer-grid");
    var node = api && api.getDisplayedRowAtIndex(Number(row.getAttribute("row-index")));
    if (node && node.data) {
      event.preventDefault();
      node.setSelected(true, true);
    }
  }

  function searchHits() {
    return Array.prototype.slice.call(document.querySelectorAll("#unit-search-results .search-hit"));
  }

  function onSearchKey(event) {
    var box = document.getElementById("unit-search-q");
    var results = document.getElementById("unit-search-results");
    if (!box || !results) { return; }
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName) || event.target.isContentEditable;
    if (event.key === "/" && !typing) {
      event.preventDefault();
      box.focus();
      return;
    }
    var hits = searchHits();
    var i = hits.indexOf(event.target);
    if (event.target === box && event.key === "ArrowDown" && hits.length && !results.hidden) {
      event.preventDefault();
      hits[0].focus();
    } else if (i >= 0 && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      event.preventDefault();
      var next = i + (event.key === "ArrowDown" ? 1 : -1);
      if (next < 0) { box.focus(); } else if (next < hits.length) { hits[next].focus(); }
    } else if (event.key === "Escape" && (event.target === box || i >= 0)) {
      box.closest(".unit-search").classList.add("search-closed");
      box.focus();
    } else if (event.target === box && event.key !== "Escape") {
      box.closest(".unit-search").classList.remove("search-closed");
    }
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

  /* New results on the overview (a drill-down, a shared-unit list) are scrolled into view and their heading takes
     the focus, so pressing a cell visibly does something and a keyboard user lands on what it produced. */
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    a11y: {
      reveal: function (children, id) {
        var noUpdate = window.dash_clientside.no_update;
        if (!children || (Array.isArray(children) && !children.length)) { return noUpdate; }
        window.setTimeout(function () {
          var box = document.getElementById(id);
          var heading = box && box.querySelector(".result-heading");
          if (!box) { return; }
          box.scrollIntoView({ block: "start" });
          if (heading) { heading.focus({ preventScroll: true }); }
        }, 50);
        return "";
      }
    }
  });

  var labelCount = 0;
  var pending = false;
  function apply() {
    pending = false;
    markTabs(document);
    nameControls(document);
    focusDropdowns(document);
    quietToolbars(document);
    groupChoices(document);
    quietGridContainers(document);
    plainNumberBoxes(document);
    describeSearch(document);
  }

  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(apply);
    }
  }

  function start() {
    apply();
    document.addEventListener("keydown", onGridEnter, true);
    document.addEventListener("keydown", onSearchKey);
    document.addEventListener("click", function (event) {
      var hint = event.target.closest && event.target.closest(".focus-search");
      var box = document.getElementById("unit-search-q");
      if (hint && box) { box.focus(); }
    });
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
