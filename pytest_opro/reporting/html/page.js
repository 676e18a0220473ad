// Filters and search for the example tables. Without this script every row is shown.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("opro-data").textContent);
  var boxes = document.querySelectorAll(".examples");
  Array.prototype.forEach.call(boxes, function (box) {
    var task = data.tasks[Number(box.getAttribute("data-task"))] || {};
    var controls = box.querySelector(".controls");
    var rows = Array.prototype.slice.call(box.querySelectorAll("tbody tr"));
    var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
    var buttons = Array.prototype.slice.call(controls.querySelectorAll("button"));
    var search = controls.querySelector("input");
    var shown = controls.querySelector(".shown");
    var filter = "all";
    var query = "";
    function wanted(kind) {
      if (filter === "all") { return true; }
      if (filter === "changed") { return kind !== "same"; }
      return kind === filter;
    }
    function apply() {
      var count = 0;
      rows.forEach(function (row, i) {
        var keep = wanted(row.getAttribute("data-kind")) && (!query || texts[i].indexOf(query) !== -1);
        row.hidden = !keep;
        if (keep) { count += 1; }
      });
      var total = task.counts ? Object.keys(task.counts).reduce(function (s, k) { return s + task.counts[k]; }, 0) : rows.length;
      shown.textContent = count + " of " + rows.length + " rows shown" + (total > rows.length ? " (" + total + " examples in the split)" : "");
    }
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        filter = button.getAttribute("data-filter");
        buttons.forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
        apply();
      });
    });
    search.addEventListener("input", function () { query = search.value.trim().toLowerCase(); apply(); });
    controls.hidden = false;
    apply();
  });
}());
