// Risk-over-time chart of the user page: one point per session, coloured by
// band. The data comes from the json_script block "risk-chart-data"; point
// labels are preformatted in the analyst's time zone by the server, and
// Chart.js draws every label and tooltip on the canvas, never as HTML.
(function () {
  "use strict";

  function cssColour(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name);
    return value.trim() || fallback;
  }

  var BAND_COLOURS = {
    allow: cssColour("--success-border", "#4ac26b"),
    review: cssColour("--warning-border", "#d4a72c"),
    block: cssColour("--error-border", "#ff8182"),
  };
  var MUTED = cssColour("--muted", "#57606a");

  // Draws a dashed vertical line at each known scoring change.
  // options.markers: [{x: epoch milliseconds, description: "..."}].
  var scoringChangeMarkers = {
    id: "scoringChangeMarkers",
    afterDatasetsDraw: function (chart, args, options) {
      var area = chart.chartArea;
      var context = chart.ctx;
      context.save();
      context.strokeStyle = MUTED;
      context.fillStyle = MUTED;
      context.setLineDash([4, 4]);
      context.font = "11px system-ui, sans-serif";
      (options.markers || []).forEach(function (marker) {
        var x = chart.scales.x.getPixelForValue(marker.x);
        if (x < area.left || x > area.right) {
          return;
        }
        context.beginPath();
        context.moveTo(x, area.top);
        context.lineTo(x, area.bottom);
        context.stroke();
        context.fillText("Scoring change", x + 3, area.top + 11);
      });
      context.restore();
    },
  };

  function drawRiskChart() {
    var element = document.getElementById("risk-chart-data");
    var canvas = document.getElementById("risk-chart");
    if (!element || !canvas) {
      return;
    }
    var data = JSON.parse(element.textContent);
    var dateFormat = new Intl.DateTimeFormat(undefined, {
      timeZone: data.time_zone,
      year: "numeric",
      month: "short",
      day: "numeric",
    });

    new Chart(canvas, {
      type: "scatter",
      data: {
        datasets: data.series.map(function (series) {
          return {
            label: series.label,
            data: series.points,
            backgroundColor: BAND_COLOURS[series.band],
            borderColor: BAND_COLOURS[series.band],
            pointRadius: 3,
          };
        }),
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: {
            type: "linear",
            title: { display: true, text: "Session time (" + data.time_zone + ")" },
            ticks: {
              callback: function (value) {
                return dateFormat.format(new Date(value));
              },
            },
          },
          y: {
            min: 0,
            max: 100,
            title: { display: true, text: "Risk score" },
          },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.raw.label + ": " + item.raw.y + ", " + item.dataset.label;
              },
            },
          },
          scoringChangeMarkers: { markers: data.scoring_changes },
        },
      },
      plugins: [scoringChangeMarkers],
    });
  }

  document.addEventListener("DOMContentLoaded", drawRiskChart);
})();
