// Overview charts. Each <div class="chart-slot" data-chart-data="ID" data-series="KEY"> is drawn
// with uPlot from the JSON the server rendered with json_script into <script id="ID">: that
// script is data (type application/json), never executed, so the Content-Security-Policy's
// script-src 'self' allows it. uPlot draws on a canvas and sets element styles through the
// CSSOM, which style-src 'self' allows too. Without JavaScript the page's table has the numbers.
(function () {
  "use strict";

  const HEIGHT = 150;
  const COLORS = {
    axis: "#6b7280",
    grid: "#eef0f3",
    volume: "#6172f3",
    volumeFill: "rgba(97, 114, 243, 0.35)",
    failed: "#d92d20",
    failedFill: "rgba(240, 68, 56, 0.9)",
  };
  const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
  // Counts are whole numbers: only whole steps on the y axis.
  const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5,
    2e5, 5e5, 1e6, 2e6, 5e6, 1e7];
  const parsed = new Map();

  function chartData(id) {
    if (!parsed.has(id)) {
      const script = document.getElementById(id);
      let data = null;
      try {
        data = script ? JSON.parse(script.textContent) : null;
      } catch {
        data = null;
      }
      parsed.set(id, data);
    }
    return parsed.get(id);
  }

  function pad(number) {
    return String(number).padStart(2, "0");
  }

  // Labels in UTC, as everywhere else in the dashboard.
  function clock(seconds) {
    const date = new Date(seconds * 1000);
    return `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
  }

  function weekday(seconds) {
    return new Date(seconds * 1000).toLocaleDateString("en", { weekday: "short", timeZone: "UTC" });
  }

  function slotLabel(start, size) {
    const day = size >= 6 * 3600 ? `${weekday(start)} ` : "";
    return `${day}${clock(start)}–${clock(start + size)} UTC`;
  }

  // What the slot under the pointer holds; the caption above the chart has the window's totals.
  function describe(readout, series, size) {
    return (u) => {
      const index = u.cursor.idx;
      if (index == null) {
        readout.textContent = "Point at a bar for its counts.";
        return;
      }
      const start = u.data[0][index] - size / 2;
      readout.textContent = `${slotLabel(start, size)}: `
        + `${series.volume[index].toLocaleString("en")} deliveries, `
        + `${series.failed[index].toLocaleString("en")} failed`;
    };
  }

  function options(width, data, onCursor) {
    const size = data.slot_seconds;
    const first = data.slots[0];
    const last = data.slots[data.slots.length - 1] + size;
    const spansDays = last - first > 86400;
    const bars = uPlot.paths.bars({ size: [0.8, 48], align: 0 });
    return {
      width,
      height: HEIGHT,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
      cursor: { points: { show: false }, drag: { x: false, y: false, setScale: false } },
      select: { show: false },
      legend: { show: false },
      hooks: { setCursor: [onCursor] },
      scales: {
        x: { time: true, range: () => [first, last] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        {
          stroke: COLORS.axis,
          font: FONT,
          grid: { show: false },
          ticks: { stroke: COLORS.grid },
          space: 64,
          values: (u, ticks) => ticks.map(
            (seconds) => (spansDays ? `${weekday(seconds)} ${clock(seconds)}` : clock(seconds)),
          ),
        },
        {
          stroke: COLORS.axis,
          font: FONT,
          size: 48,
          incrs: COUNT_STEPS,
          grid: { stroke: COLORS.grid, width: 1 },
          ticks: { show: false },
          values: (u, ticks) => ticks.map((v) => (Number.isInteger(v) ? v.toLocaleString("en") : "")),
        },
      ],
      series: [
        {},
        {
          label: "All deliveries",
          stroke: COLORS.volume,
          fill: COLORS.volumeFill,
          width: 0, // an empty slot draws nothing, not a line along the axis
          paths: bars,
          points: { show: false },
        },
        {
          label: "Failed",
          stroke: COLORS.failed,
          fill: COLORS.failedFill,
          width: 0,
          paths: bars,
          points: { show: false },
        },
      ],
    };
  }

  function draw(slot) {
    const data = chartData(slot.dataset.chartData);
    const series = data && data.destinations[slot.dataset.series];
    if (!series || !data.slots.length) return;
    // Bars sit in the middle of their slot; failures are drawn over the volume they are part of.
    const middles = data.slots.map((start) => start + data.slot_seconds / 2);
    const readout = document.createElement("p");
    readout.className = "chart-readout";
    const onCursor = describe(readout, series, data.slot_seconds);
    slot.replaceChildren();
    const chart = new uPlot(
      options(slot.clientWidth, data, onCursor),
      [middles, series.volume, series.failed],
      slot,
    );
    slot.append(readout);
    onCursor(chart);
    slot.dataset.drawn = "true";
    new ResizeObserver(() => {
      if (slot.clientWidth) chart.setSize({ width: slot.clientWidth, height: HEIGHT });
    }).observe(slot);
  }

  function drawAll(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll(".chart-slot[data-chart-data]:not([data-drawn])").forEach(draw);
  }

  drawAll(document);
  document.addEventListener("htmx:load", (event) => drawAll(event.target));
})();
