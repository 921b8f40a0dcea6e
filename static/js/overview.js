// Charts of the overview page, drawn from the page's json_script blocks.
// Labels from the API (actions, check names) reach Chart.js as plain strings,
// which it draws on the canvas, never as HTML. A figure without sessions in
// range has no block or canvas, so it is skipped.
(function () {
  "use strict";

  function readData(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function cssColour(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name);
    return value.trim() || fallback;
  }

  var BAND_COLOURS = {
    allow: cssColour("--success-border", "#4ac26b"),
    review: cssColour("--warning-border", "#d4a72c"),
    block: cssColour("--error-border", "#ff8182"),
  };
  var NEUTRAL = cssColour("--link", "#0550ae");
  var MUTED = cssColour("--muted", "#57606a");

  // Draws a dashed vertical line and a caption at each known scoring change.
  // options.markers: [{date: "YYYY-MM-DD", description: "..."}], matched
  // against the chart's category labels.
  var scoringChangeMarkers = {
    id: "scoringChangeMarkers",
    afterDatasetsDraw: function (chart, args, options) {
      var markers = options.markers || [];
      var area = chart.chartArea;
      var labels = chart.data.labels;
      var context = chart.ctx;
      context.save();
      context.strokeStyle = MUTED;
      context.fillStyle = MUTED;
      context.setLineDash([4, 4]);
      context.font = "11px system-ui, sans-serif";
      markers.forEach(function (marker) {
        var index = labels.indexOf(marker.date);
        if (index < 0) {
          return;
        }
        var x = chart.scales.x.getPixelForValue(index);
        context.beginPath();
        context.moveTo(x, area.top);
        context.lineTo(x, area.bottom);
        context.stroke();
        context.fillText("Scoring change", x + 3, area.top + 11);
      });
      context.restore();
    },
  };

  function drawHistogram() {
    var data = readData("score-histogram-data");
    var canvas = document.getElementById("score-histogram");
    if (!data || !canvas) {
      return;
    }
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.bands.map(function (band) {
          return {
            label: band.label,
            data: band.counts,
            backgroundColor: BAND_COLOURS[band.band] || NEUTRAL,
          };
        }),
      },
      options: {
        maintainAspectRatio: false,
        scales: {
          x: { stacked: true, title: { display: true, text: "Risk score" } },
          y: {
            stacked: true,
            beginAtZero: true,
            ticks: { precision: 0 },
            title: { display: true, text: "Sessions" },
          },
        },
      },
    });
  }

  function drawRiskOverTime() {
    var data = readData("risk-over-time-data");
    var canvas = document.getElementById("risk-over-time");
    if (!data || !canvas || data.days.length === 0) {
      return;
    }
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.days.map(function (day) { return day.date; }),
        datasets: [
          {
            label: "Average score",
            data: data.days.map(function (day) { return day.average; }),
            yAxisID: "score",
            borderColor: NEUTRAL,
            backgroundColor: NEUTRAL,
          },
          {
            label: "High-risk share (%)",
            data: data.days.map(function (day) { return day.high_risk_percent; }),
            yAxisID: "share",
            borderColor: BAND_COLOURS.block,
            backgroundColor: BAND_COLOURS.block,
            borderDash: [6, 3],
          },
        ],
      },
      options: {
        maintainAspectRatio: false,
        spanGaps: false,
        scales: {
          score: {
            position: "left",
            min: 0,
            max: 100,
            title: { display: true, text: "Average score" },
          },
          share: {
            position: "right",
            min: 0,
            max: 100,
            grid: { drawOnChartArea: false },
            title: { display: true, text: "High-risk share (%)" },
          },
        },
        plugins: {
          scoringChangeMarkers: { markers: data.scoring_changes },
        },
      },
      plugins: [scoringChangeMarkers],
    });
  }

  function drawActions() {
    var data = readData("actions-data");
    var canvas = document.getElementById("actions-chart");
    if (!data || !canvas || data.bars.length === 0) {
      return;
    }
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.bars.map(function (bar) { return bar.label; }),
        datasets: [
          {
            label: "Sessions",
            data: data.bars.map(function (bar) { return bar.count; }),
            backgroundColor: data.bars.map(function (bar) {
              return bar.kind === "documented" ? NEUTRAL : MUTED;
            }),
          },
        ],
      },
      options: {
        maintainAspectRatio: false,
        indexAxis: "y",
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  function drawChecks() {
    var checks = readData("checks-data");
    var canvas = document.getElementById("checks-chart");
    if (!checks || !canvas || checks.length === 0) {
      return;
    }
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: checks.map(function (check) {
          return check.group + ": " + check.name;
        }),
        datasets: [
          {
            label: "Detection rate (%)",
            data: checks.map(function (check) { return check.detection_percent; }),
            backgroundColor: BAND_COLOURS.block,
          },
          {
            label: "Unknown share (%)",
            data: checks.map(function (check) { return check.unknown_percent; }),
            backgroundColor: MUTED,
          },
        ],
      },
      options: {
        maintainAspectRatio: false,
        indexAxis: "y",
        scales: { x: { min: 0, max: 100 } },
      },
    });
  }

  function drawAll() {
    if (typeof Chart === "undefined") {
      // The tables beside each canvas still carry every value.
      return;
    }
    drawHistogram();
    drawRiskOverTime();
    drawActions();
    drawChecks();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
