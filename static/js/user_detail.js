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

  // Chart.js pads a linear axis by years when every point has the same x,
  // as when all sessions were first seen in one poll. Keep at least a day.
  function timeRange(seriesList) {
    var times = [];
    seriesList.forEach(function (series) {
      series.points.forEach(function (point) {
        times.push(point.x);
      });
    });
    if (times.length === 0) {
      return { min: undefined, max: undefined };
    }
    var min = Math.min.apply(null, times);
    var max = Math.max.apply(null, times);
    var halfDay = 12 * 60 * 60 * 1000;
    if (max - min < 2 * halfDay) {
      return { min: min - halfDay, max: max + halfDay };
    }
    return { min: min, max: max };
  }

  // Intl.DateTimeFormat throws RangeError for a zone name the browser does
  // not know, such as "localtime", so the ticks fall back to UTC.
  // Ticks name the hour too when the chart spans less than three days.
  function dayFormat(timeZone, withHours) {
    var options = { timeZone: timeZone, year: "numeric", month: "short", day: "numeric" };
    if (withHours) {
      options.hour = "2-digit";
      options.minute = "2-digit";
    }
    try {
      return { format: new Intl.DateTimeFormat(undefined, options), zone: timeZone };
    } catch (error) {
      if (!(error instanceof RangeError)) {
        throw error;
      }
      options.timeZone = "UTC";
      return { format: new Intl.DateTimeFormat(undefined, options), zone: "UTC" };
    }
  }

  function drawRiskChart() {
    var element = document.getElementById("risk-chart-data");
    var canvas = document.getElementById("risk-chart");
    if (!element || !canvas || typeof Chart === "undefined") {
      // Without Chart.js the sessions table below still lists every score.
      return;
    }
    var data = JSON.parse(element.textContent);
    var range = timeRange(data.series);
    var threeDays = 3 * 24 * 60 * 60 * 1000;
    var day = dayFormat(data.time_zone, range.max - range.min < threeDays);

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
            min: range.min,
            max: range.max,
            title: { display: true, text: "Session time (" + day.zone + ")" },
            ticks: {
              callback: function (value) {
                return day.format.format(new Date(value));
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
