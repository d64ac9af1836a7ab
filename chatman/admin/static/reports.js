// The campaign report's charts: the funnel as bars and the time series as lines, drawn by
// Chart.js from the report's JSON (never from inline script). Changing the range or the
// granularity redraws the time series without reloading the page. Once a chart has drawn,
// its box gets data-drawn="true".
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("report-charts");
  if (!root || !window.Chart) return;
  const { json } = window.chatman;
  const funnelBox = root.querySelector('[data-chart="funnel"]');
  const seriesBox = root.querySelector('[data-chart="timeseries"]');
  const form = document.getElementById("series-form");
  const problem = document.getElementById("series-error");
  const COLORS = {
    targeted: "#98a2b3",
    sent: "#5b8def",
    delivered: "#0b7a53",
    read: "#12b76a",
    replied: "#a15c07",
    clicked: "#7a5af8",
    failed: "#b42318",
  };
  const METRICS = ["sent", "delivered", "read", "replied", "clicked", "failed"];
  const words = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/_/g, " ");
  const drawn = (box) => ({
    id: "drawn",
    afterRender: () => {
      box.dataset.drawn = "true";
    },
  });
  const integers = { beginAtZero: true, ticks: { precision: 0 } };

  // Bucket starts come in the viewer's zone already ("2026-12-03T14:00:00+05:30"): shown as
  // written, not converted again by the browser.
  const bucketLabel = (iso, granularity) => {
    if (granularity === "month") return iso.slice(0, 7);
    if (granularity === "day") return iso.slice(0, 10);
    return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  };

  let seriesChart = null;

  const drawFunnel = (funnel) =>
    new window.Chart(funnelBox.querySelector("canvas"), {
      type: "bar",
      data: {
        labels: funnel.labels.map(words),
        datasets: [
          {
            label: "Recipients",
            data: funnel.values,
            backgroundColor: funnel.labels.map((name) => COLORS[name] || "#98a2b3"),
          },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: integers },
      },
      plugins: [drawn(funnelBox)],
    });

  const drawSeries = (series) => {
    const figures = series.series[0] || {};
    const labels = series.buckets.map((iso) => bucketLabel(iso, series.granularity));
    const datasets = METRICS.map((name) => ({
      label: words(name),
      data: figures[name] || [],
      borderColor: COLORS[name],
      backgroundColor: COLORS[name],
      tension: 0.2,
      pointRadius: labels.length > 60 ? 0 : 2,
    }));
    seriesBox.dataset.drawn = "false";
    if (seriesChart) {
      seriesChart.data.labels = labels;
      seriesChart.data.datasets = datasets;
      seriesChart.update();
      return;
    }
    seriesChart = new window.Chart(seriesBox.querySelector("canvas"), {
      type: "line",
      data: { labels, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: integers },
      },
      plugins: [drawn(seriesBox)],
    });
  };

  const fetchData = async (url) => {
    try {
      const data = await json(url);
      problem.hidden = true;
      problem.textContent = "";
      return data;
    } catch (error) {
      const reasons = Object.values((error.body && error.body.errors) || {}).flat();
      problem.textContent = [error.message, ...reasons].join(" ");
      problem.hidden = false;
      return null;
    }
  };

  const query = () => {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) params.append(key, value);
    return params.toString();
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = query();
    const data = await fetchData(`${form.dataset.url}?${params}`);
    if (!data) return;
    drawSeries(data.timeseries);
    window.history.replaceState(null, "", params ? `${form.action}?${params}` : form.action);
  });
  form.addEventListener("change", (event) => {
    if (event.target.tagName !== "SELECT") return;
    const custom = form.elements.preset.value === "custom";
    if (!custom || (form.elements.start.value && form.elements.end.value)) form.requestSubmit();
  });

  fetchData(root.dataset.url).then((data) => {
    if (!data) return;
    drawFunnel(data.funnel);
    drawSeries(data.timeseries);
  });
});
