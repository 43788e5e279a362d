/* sbbench leaderboard table: sort by any column, filter by track, task, text and staleness.
   Plain DOM code, no libraries, no network: works from file:// and any static host. */
(function () {
  "use strict";
  var table = document.getElementById("leaderboard");
  if (!table) {
    return;
  }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var controls = document.getElementById("controls");
  var search = document.getElementById("search");
  var track = document.getElementById("track-filter");
  var task = document.getElementById("task-filter");
  var hideStale = document.getElementById("hide-stale");
  var shown = document.getElementById("shown");
  var noMatch = document.getElementById("no-match");

  function key(row, index, numeric) {
    var raw = row.cells[index].getAttribute("data-value");
    if (!numeric) {
      return raw;
    }
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }

  function sortBy(index) {
    var header = headers[index];
    var numeric = header.getAttribute("data-type") === "num";
    var current = header.getAttribute("aria-sort");
    var direction;
    if (current === "descending") {
      direction = "ascending";
    } else if (current === "ascending") {
      direction = "descending";
    } else {
      direction = numeric ? "descending" : "ascending";
    }
    headers.forEach(function (other) { other.setAttribute("aria-sort", "none"); });
    header.setAttribute("aria-sort", direction);
    var sign = direction === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric);
      var y = key(b, index, numeric);
      if (x === null || y === null) {  // missing values always last
        return (x === null) - (y === null);
      }
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function applyFilters() {
    var text = search.value.trim().toLowerCase();
    var wantedTrack = track.value;
    var wantedTask = task.value;
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var visible = (!wantedTrack || row.getAttribute("data-track") === wantedTrack) &&
        (!text || row.getAttribute("data-search").indexOf(text) !== -1) &&
        !(hideStale.checked && row.getAttribute("data-status") === "stale");
      row.hidden = !visible;
      count += visible ? 1 : 0;
    });
    Array.prototype.forEach.call(table.querySelectorAll("[data-task]"), function (cell) {
      cell.hidden = Boolean(wantedTask) && cell.getAttribute("data-task") !== wantedTask;
    });
    shown.textContent = count + " of " + body.rows.length + " entries shown";
    noMatch.hidden = count !== 0;
  }

  headers.forEach(function (header, index) {
    header.querySelector("button").addEventListener("click", function () { sortBy(index); });
  });
  [search, track, task, hideStale].forEach(function (control) {
    control.addEventListener("input", applyFilters);
    control.addEventListener("change", applyFilters);
  });
  controls.hidden = false;
  applyFilters();
})();
