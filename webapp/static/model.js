// Model health charts (Chart.js, vendored). Data comes from the JSON block the server rendered
// (#model-data); the trainer writes a few times a day, so a reload is enough to update.
// No inline scripts or styles (CSP).
(function () {
  "use strict";

  var PROMOTED = "#0f766e", REJECTED = "#c81e1e", COMPARED = "#64748b";

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function dayOf(iso) { return iso ? iso.substring(0, 10) : ""; }

  function versionsChart(versions) {
    var labels = versions.map(function (m) { return dayOf(m.trained_at) || m.version; });
    function ap(status) {
      return versions.map(function (m) { return m.status === status ? m.metrics.validation_ap : null; });
    }
    return {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          { label: "candidate, promoted", data: ap("promoted"), showLine: false, pointRadius: 6,
            pointStyle: "circle", borderColor: PROMOTED, backgroundColor: PROMOTED },
          { label: "candidate, rejected", data: ap("rejected"), showLine: false, pointRadius: 7,
            pointStyle: "crossRot", borderWidth: 3, borderColor: REJECTED, backgroundColor: REJECTED },
          { label: "model it was compared with", spanGaps: true, borderDash: [6, 4], pointRadius: 2,
            borderColor: COMPARED, backgroundColor: COMPARED,
            data: versions.map(function (m) { return m.metrics.current_ap; }) }
        ]
      },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: function (items) {
                var m = versions[items[0].dataIndex];
                return m.version + " (" + m.kind + ", " + m.status + ")";
              },
              footer: function (items) {
                var m = versions[items[0].dataIndex];
                return "validation day " + (m.metrics.validation_day || "-") +
                  (m.metrics.current_version ? "; compared with " + m.metrics.current_version : "");
              }
            }
          }
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxTicksLimit: 12 }, title: { display: true, text: "trained on" } },
          y: { beginAtZero: true, suggestedMax: 1, title: { display: true, text: "average precision (validation day)" } }
        }
      }
    };
  }

  function field(days, name) {
    return days.map(function (d) { return d.missing || d[name] === undefined ? null : d[name]; });
  }

  function budgetChart(days) {
    return {
      type: "bar",
      data: {
        labels: days.map(function (d) { return d.day; }),
        datasets: [
          { type: "bar", label: "alerted cards", data: field(days, "alerted_cards"), backgroundColor: "#457b9d" },
          { type: "line", label: "budget (cards / day)", data: field(days, "budget_cards_per_day"),
            stepped: "middle", spanGaps: true, pointRadius: 0, borderWidth: 2, borderColor: "#e76f51",
            backgroundColor: "#e76f51" }
        ]
      },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { x: { grid: { display: false }, ticks: { maxTicksLimit: 10 } }, y: { beginAtZero: true, title: { display: true, text: "cards" } } }
      }
    };
  }

  function precisionChart(days) {
    function line(label, name, color, dashed) {
      return { label: label, data: field(days, name), spanGaps: true, pointRadius: 2, borderWidth: 2,
               borderColor: color, backgroundColor: color, borderDash: dashed ? [6, 4] : [] };
    }
    return {
      type: "line",
      data: {
        labels: days.map(function (d) { return d.day; }),
        datasets: [
          line("alert precision", "alert_precision", "#2a9d8f", false),
          line("card precision@k", "card_precision_at_k", "#9b5de5", false),
          line("day AP", "day_ap", "#d62828", false),
          line("validation AP", "validation_ap", "#64748b", true)
        ]
      },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { x: { grid: { display: false }, ticks: { maxTicksLimit: 10 } }, y: { min: 0, max: 1 } }
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var model = readJson("model-data");
    if (!model || !window.Chart) return;
    var charts = {
      versions: model.versions.length ? versionsChart(model.versions) : null,
      budget: model.days.length ? budgetChart(model.days) : null,
      precision: model.days.length ? precisionChart(model.days) : null
    };
    Object.keys(charts).forEach(function (name) {
      var canvas = document.getElementById("chart-" + name);
      if (canvas && charts[name]) new window.Chart(canvas, charts[name]);
    });
    document.body.setAttribute("data-charts", "ready");
  });
})();
