// Dashboard charts (Chart.js, vendored). Data comes from the JSON block the server rendered,
// then from /api/stats every 15 s. No inline scripts or styles (CSP).
(function () {
  "use strict";

  var RULE_COLORS = {
    compromised_card: "#d62828", impossible_travel: "#457b9d", card_testing: "#9b5de5",
    merchant_risk: "#e76f51", amount_vs_habit: "#f4a261", amount_vs_merchant: "#f6bd60",
    velocity_count: "#2a9d8f", velocity_amount: "#264653", card_activity: "#84a59d",
    location_anomaly: "#e9c46a", high_amount: "#e63946", amount_spike: "#f4a261"
  };
  var SEVERITY_COLORS = { low: "#8d99ae", medium: "#e9c46a", high: "#f4a261", critical: "#d62828" };
  var OUTCOME_COLORS = { confirmed_fraud: "#d62828", false_positive: "#2a9d8f", dismissed: "#adb5bd" };
  var charts = {};

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function minuteLabel(iso) { return iso.substring(11, 16); }

  function render(stats, meta) {
    var labels = meta.labels || {};
    var minutes = stats.minutes;
    var x = minutes.map(function (m) { return minuteLabel(m.minute); });
    var rules = Object.keys(RULE_COLORS);
    var datasets = rules.map(function (rule) {
      return {
        type: "bar", label: labels[rule] || rule, yAxisID: "alerts", stack: "alerts",
        backgroundColor: RULE_COLORS[rule], data: minutes.map(function (m) { return m.by_rule[rule] || 0; })
      };
    });
    datasets.push({
      type: "line", label: "Transactions", yAxisID: "transactions", borderColor: "#1d3557",
      backgroundColor: "#1d3557", pointRadius: 0, borderWidth: 2, tension: 0.25,
      data: minutes.map(function (m) { return m.transactions; })
    });
    var severities = Object.keys(SEVERITY_COLORS);
    var outcomes = stats.outcomes;

    var configs = {
      minutes: {
        data: { labels: x, datasets: datasets },
        options: {
          animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: {
            x: { stacked: true, ticks: { maxTicksLimit: 12 }, grid: { display: false } },
            alerts: { type: "linear", position: "left", stacked: true, beginAtZero: true, title: { display: true, text: "alerts / min" } },
            transactions: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "transactions / min" } }
          }
        }
      },
      severity: {
        type: "doughnut",
        data: {
          labels: severities,
          datasets: [{ data: severities.map(function (s) { return stats.by_severity[s] || 0; }),
                       backgroundColor: severities.map(function (s) { return SEVERITY_COLORS[s]; }) }]
        },
        options: { animation: false, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } } }
      },
      outcomes: {
        type: "bar",
        data: {
          labels: outcomes.map(function (o) { return labels[o.rule] || o.rule; }),
          datasets: ["confirmed_fraud", "false_positive", "dismissed"].map(function (k) {
            return { label: k.replace("_", " "), backgroundColor: OUTCOME_COLORS[k], data: outcomes.map(function (o) { return o[k]; }) };
          })
        },
        options: {
          animation: false, maintainAspectRatio: false, indexAxis: "y",
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } }
        }
      }
    };

    Object.keys(configs).forEach(function (name) {
      var config = configs[name];
      if (charts[name]) {
        charts[name].data = config.data;
        charts[name].update("none");
      } else {
        var canvas = document.getElementById("chart-" + name);
        if (canvas) charts[name] = new window.Chart(canvas, config);
      }
    });

    setText("kpi-transactions", stats.totals.transactions.toLocaleString("en"));
    setText("kpi-alerts", stats.totals.alerts.toLocaleString("en"));
    setText("kpi-rate", stats.totals.alerts_per_1000_transactions === null ? "-" : String(stats.totals.alerts_per_1000_transactions));
    setText("kpi-late", stats.totals.late.toLocaleString("en"));
    document.body.setAttribute("data-charts", "ready");
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var stats = readJson("stats-data");
    var meta = readJson("stats-meta") || {};
    if (!stats || !window.Chart) return;
    render(stats, meta);
    window.setInterval(function () {
      fetch(meta.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (fresh) { if (fresh) render(fresh, meta); })
        .catch(function () { /* keep the last charts; the next tick retries */ });
    }, 15000);
  });
})();
