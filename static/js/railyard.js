/* Railyard's own behaviour, loaded on every page (the Content-Security-Policy allows scripts
   from /static only). Everything here enhances markup that works without it:
   - stage reordering: drag a stage by its handle, or focus the handle, press Space, move it
     with the arrow keys and press Space again; either way ONE request sends the new order
     (the hidden #stage-order form), and focus returns to the moved stage's handle;
   - checklists (the pipeline page's "Add flags"): a search box that hides what does not
     match, "Select all shown", and a live count of the flags selected. */
(function () {
  "use strict";

  // --- stage reordering ------------------------------------------------------------------------
  var refocus = null;  // the handle to focus once the builder is swapped in

  function list() { return document.querySelector("ol[data-reorder]"); }
  function cards(ol) { return Array.prototype.filter.call(ol.children, function (li) { return li.dataset.stageId; }); }

  function announce(text) {
    var region = document.getElementById("reorder-status");
    if (!region) {
      region = document.createElement("p");
      region.id = "reorder-status";
      region.className = "visually-hidden";
      region.setAttribute("role", "status");
      document.body.appendChild(region);
    }
    region.textContent = text;
  }

  function submitOrder(ol, movedId) {
    var form = document.querySelector(ol.dataset.reorder);
    if (!form) { return; }
    var ids = cards(ol).map(function (li) { return li.dataset.stageId; });
    var before = Array.prototype.map.call(form.querySelectorAll("input[name=order]"), function (i) { return i.value; });
    if (ids.join(",") === before.join(",")) { return; }
    form.querySelectorAll("input[name=order]").forEach(function (input) { input.remove(); });
    ids.forEach(function (id) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = "order"; input.value = id;
      form.appendChild(input);
    });
    refocus = movedId;
    form.requestSubmit();
  }

  // Drag and drop (the HTML API: the handle is draggable, the card is what moves).
  var dragged = null;
  document.addEventListener("dragstart", function (event) {
    var handle = event.target.closest && event.target.closest("[data-stage-handle]");
    if (!handle) { return; }
    dragged = handle.closest("li[data-stage-id]");
    dragged.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragged.dataset.stageId);
    event.dataTransfer.setDragImage(dragged, 20, 20);
  });
  document.addEventListener("dragover", function (event) {
    if (!dragged) { return; }
    var over = event.target.closest && event.target.closest("li[data-stage-id]");
    if (!over || over === dragged || over.parentNode !== dragged.parentNode) { return; }
    event.preventDefault();
    var box = over.getBoundingClientRect();
    var after = event.clientY > box.top + box.height / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });
  document.addEventListener("drop", function (event) { if (dragged) { event.preventDefault(); } });
  document.addEventListener("dragend", function () {
    if (!dragged) { return; }
    var moved = dragged;
    dragged = null;
    moved.classList.remove("dragging");
    submitOrder(moved.parentNode, moved.dataset.stageId);
  });

  // Keyboard: Space/Enter picks the stage up, arrows move it, Space/Enter drops, Escape undoes.
  var lifted = null, liftedFrom = null;
  document.addEventListener("keydown", function (event) {
    var handle = event.target.closest && event.target.closest("[data-stage-handle]");
    if (!handle) { return; }
    var li = handle.closest("li[data-stage-id]"), ol = li.parentNode;
    var name = handle.getAttribute("aria-label").replace(/^Reorder /, "");
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      if (lifted === li) {
        lifted = null; li.classList.remove("lifted"); handle.setAttribute("aria-pressed", "false");
        announce("Dropped " + name + " at place " + (cards(ol).indexOf(li) + 1) + ".");
        submitOrder(ol, li.dataset.stageId);
      } else {
        lifted = li; liftedFrom = cards(ol).indexOf(li);
        li.classList.add("lifted"); handle.setAttribute("aria-pressed", "true");
        announce("Picked up " + name + ". Move it with the up and down arrows, press Space to drop it, Escape to cancel.");
      }
    } else if (lifted === li && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      var all = cards(ol), at = all.indexOf(li);
      if (event.key === "ArrowUp" && at > 0) { ol.insertBefore(li, all[at - 1]); }
      if (event.key === "ArrowDown" && at < all.length - 1) { ol.insertBefore(all[at + 1], li); }
      handle.focus();
      announce(name + ": place " + (cards(ol).indexOf(li) + 1) + " of " + all.length + ".");
    } else if (lifted === li && event.key === "Escape") {
      event.preventDefault();
      var rest = cards(ol).filter(function (x) { return x !== li; });
      ol.insertBefore(li, rest[liftedFrom] || null);
      lifted = null; li.classList.remove("lifted"); handle.setAttribute("aria-pressed", "false");
      handle.focus();
      announce("Move cancelled.");
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!refocus) { return; }
    var handle = document.getElementById("handle-" + refocus);
    refocus = null;
    if (handle) { handle.focus(); }
  });

  // --- checklists ------------------------------------------------------------------------------
  function refresh(form) {
    var boxes = form.querySelectorAll("input[name=feature_ids]");
    var count = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
    var shown = Array.prototype.filter.call(boxes, function (b) { return !b.disabled && !b.closest("li").hidden; });
    var label = form.querySelector("[data-checklist-count]");
    if (label) { label.textContent = count + " selected"; }
    var all = form.querySelector("[data-checklist-all]");
    if (all) {
      var on = shown.filter(function (b) { return b.checked; }).length;
      all.checked = shown.length > 0 && on === shown.length;
      all.indeterminate = on > 0 && on < shown.length;
    }
  }
  document.addEventListener("input", function (event) {
    var search = event.target.closest && event.target.closest("[data-checklist-search]");
    if (!search) { return; }
    var form = search.closest("[data-checklist]"), words = search.value.trim().toLowerCase();
    form.querySelectorAll("li[data-name]").forEach(function (li) {
      li.hidden = words !== "" && li.dataset.name.indexOf(words) === -1;
    });
    refresh(form);
  });
  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("[data-checklist]");
    if (!form) { return; }
    if (event.target.matches("[data-checklist-all]")) {
      var on = event.target.checked;
      form.querySelectorAll("input[name=feature_ids]").forEach(function (b) {
        if (!b.disabled && !b.closest("li").hidden) { b.checked = on; }
      });
    }
    refresh(form);
  });
})();
