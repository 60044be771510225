// The live panel (bar_app/live_plot.py): a Streamlit component that keeps one Plotly div per chart key
// and redraws it in place with Plotly.react.
// Runs in the page (an ES module): called again with the new data at every Streamlit run, on the
// same element. The font is the page's (read at the first draw), as with st.plotly_chart's Streamlit
// theme. A page in a background browser tab neither draws nor polls (the training gets the CPU) and
// catches up when shown. An error is shown next to the chart, which tries again with the next figure.
export default function ({ data, parentElement, setTriggerValue }) {
  let root = parentElement.querySelector("div.bar-live");
  if (!root) {
    root = document.createElement("div");
    root.className = "bar-live";
    parentElement.appendChild(root);
    for (const part of ["progress", "plot", "error", "feedError", "metrics", "caption"]) {
      root[part] = document.createElement("div");
      root[part].className = "bar-live-" + part.replace("E", "-e");
      root.appendChild(root[part]);
    }
    const div = root.plot;
    // Plotly.Plots.resize rejects (an uncaught error) for a div that is not displayed: one that leaves
    // the page when the reader picks another view, or under a hidden parent. Shown again, it resizes.
    new ResizeObserver(() => {
      if (div._fullLayout && window.Plotly && displayed(div)) window.Plotly.Plots.resize(div);
    }).observe(div);
    if (!window.__barOnShow) {
      window.__barOnShow = () => {
        if (document.hidden) return;
        document.querySelectorAll("div.bar-live").forEach(draw);
        tick();
      };
      document.addEventListener("visibilitychange", window.__barOnShow);
    }
  }
  root.barSrc = data.src;
  root.barConfig = data.config;
  root.barTrigger = setTriggerValue;
  root.barWatch = JSON.stringify(data.watch ?? null);
  root.barAsked = false;
  // From Streamlit the panel is whole: a part it lacks now (a finished job's feed caption) goes.
  root.feedError.textContent = "";
  if (!data.progress) root.progress.replaceChildren();
  if (!data.metrics) root.metrics.replaceChildren();
  if (data.caption === undefined) root.caption.textContent = "";
  apply(root, data);
  poll(root, data);
  return () => stop(root);
}

// One update of the panel: from Streamlit (data) or from the feed. Absent parts are left as they are.
function apply(root, panel) {
  if (panel.progress) showProgress(root.progress, panel.progress);
  if (panel.metrics) showMetrics(root.metrics, panel.metrics);
  if (panel.caption !== undefined) root.caption.textContent = panel.caption || "";
  if (panel.error) root.feedError.textContent = "This view could not be updated: " + panel.error;
  if (panel.figure) {
    root.barNext = panel.figure;
    if (!document.hidden) draw(root);  // a hidden page draws the latest figure when shown
  }
  if (panel.watch !== undefined && JSON.stringify(panel.watch) !== root.barWatch && !root.barAsked) {
    root.barAsked = true;  // once: the rerun renders this panel again with the new watch
    root.barTrigger("changed", JSON.stringify(panel.watch));
  }
}

// One poller for the page: every panel with a feed is asked for in one request a refresh (each
// request costs the browser a few ms of CPU across its processes). Every page polls at the server's
// ticks, the whole multiples of the period on the server's clock (each answer carries it): a
// classroom's polls arrive together, share one build and wake the server once, not once per viewer.
const feeds = (window.__barFeeds ??= { panels: new Map(), timer: null, busy: false, clock: null });

function stop(root) {
  feeds.panels.delete(root);
  schedule();
}

function poll(root, data) {
  feeds.panels.delete(root);
  if (data.feed) feeds.panels.set(root, { ...data.feed });
  schedule();
}

function schedule() {
  for (const root of [...feeds.panels.keys()]) if (!root.isConnected) feeds.panels.delete(root);
  if (!feeds.panels.size) {
    clearTimeout(feeds.timer);
    feeds.timer = null;
  } else if (feeds.timer === null) {
    feeds.timer = setTimeout(() => { feeds.timer = null; tick(); }, 1000 * untilTick());
  }
}

// Seconds until the server's next tick (a full period before the first answer tells its clock);
// a tick closer than a quarter period is skipped, so that a late answer does not bring two polls together.
function untilTick() {
  const period = Math.min(...[...feeds.panels.values()].map((f) => f.period || 1));
  if (!feeds.clock) return period;
  const now = feeds.clock.server + (performance.now() - feeds.clock.at) / 1000;
  const wait = period - (((now % period) + period) % period);
  return wait < 0.25 * period ? wait + period : wait;
}

async function tick() {
  // hidden, the page stops polling (the visibility handler starts it again); busy, the answer schedules
  if (document.hidden || feeds.busy || !feeds.panels.size) return;
  const asked = [...feeds.panels.entries()].filter(([root]) => root.isConnected);
  if (!asked.length) return schedule();
  feeds.busy = true;
  try {
    const q = asked.map(([, f]) => f.token + ":" + f.version).join(",");
    const period = Math.min(...asked.map(([, f]) => f.period || 1));
    const sent = performance.now();
    // a request that hangs (a laptop waking up, a stalled proxy) must not stop the updates for good
    const r = await fetch(asked[0][1].url + "?q=" + encodeURIComponent(q),
                          { cache: "no-store", signal: AbortSignal.timeout(Math.max(10000, 5000 * period)) });
    const clock = parseFloat(r.headers.get("X-Bar-Clock"));
    const received = performance.now();
    // the server read its clock about halfway through the round trip
    if (Number.isFinite(clock)) feeds.clock = { server: clock, at: (sent + received) / 2 };
    if (!r.ok) throw new Error("the server answered " + r.status);
    const answers = await r.json();
    for (const [root, f] of asked) {
      if (feeds.panels.get(root) !== f) continue;  // redrawn by Streamlit meanwhile: its data is newer
      root.feedError.textContent = "";
      const panel = answers[f.token];
      if (panel === false) {  // the server forgot this feed: the fragment's next run publishes it again
        stop(root);
        if (!root.barAsked) { root.barAsked = true; root.barTrigger("changed", "republish"); }
        continue;
      }
      if (!panel) continue;   // null: nothing new
      if (panel.version) f.version = panel.version;
      apply(root, panel);
    }
  } catch (err) {
    for (const [root, f] of asked) {
      if (feeds.panels.get(root) === f) root.feedError.textContent = "Live update failed (retrying): " + err.message;
    }
  } finally {
    feeds.busy = false;
    schedule();
  }
}

function showProgress(el, p) {
  if (!el.bar || !el.contains(el.bar)) {
    el.text = document.createElement("div");
    el.text.className = "bar-live-progress-text";
    el.track = document.createElement("div");
    el.track.className = "bar-live-progress-track";
    el.bar = document.createElement("div");
    el.bar.className = "bar-live-progress-fill";
    el.track.appendChild(el.bar);
    el.append(el.text, el.track);
    el.setAttribute("role", "progressbar");
    el.setAttribute("aria-valuemin", "0");
    el.setAttribute("aria-valuemax", "100");
  }
  const pct = Math.round(100 * Math.min(Math.max(p.fraction || 0, 0), 1));
  el.text.textContent = p.text || "";
  el.bar.style.width = pct + "%";
  el.setAttribute("aria-valuenow", String(pct));
}

function showMetrics(el, metrics) {
  if (el.children.length !== metrics.length) {
    el.replaceChildren(...metrics.map(() => {
      const m = document.createElement("div");
      m.className = "bar-live-metric";
      m.setAttribute("data-testid", "barLiveMetric");
      for (const part of ["label", "value", "delta"]) {
        const d = document.createElement("div");
        d.className = "bar-live-metric-" + part;
        m.appendChild(d);
      }
      return m;
    }));
  }
  metrics.forEach((spec, i) => {
    const [label, value, delta] = el.children[i].children;
    label.textContent = spec.label;
    label.title = spec.help || "";
    value.textContent = spec.value;
    delta.textContent = spec.delta || "";
  });
}

function displayed(el) {
  return el.isConnected && el.offsetParent !== null && el.clientWidth > 0 && el.clientHeight > 0;
}

function plotly(src) {
  window.__barPlotly ??= new Promise((resolve, reject) => {
    if (window.Plotly) return resolve(window.Plotly);
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { window.__barPlotly = null; script.remove(); reject(new Error("could not load " + src)); };
    document.head.appendChild(script);
  });
  return window.__barPlotly;
}

function draw(root) {
  const div = root.plot;
  const text = root.barNext;
  // A view that changes once an epoch sends the same figure every time: nothing to draw.
  if (!text || div.barFigure === text) return;
  div.barFigure = text;
  const failed = (err) => {
    if (div.barFigure !== text) return;  // a newer figure is already being drawn
    div.barFigure = null;                // try again with the next update
    root.error.textContent = "This chart could not be drawn: " + err.message;
  };
  let figure;
  try {
    figure = JSON.parse(text);
  } catch (err) {
    return failed(err);
  }
  const layout = figure.layout || {};
  window.__barFont ??= getComputedStyle(document.body).fontFamily;  // read once: it forces a style pass
  layout.font = { family: window.__barFont, ...(layout.font || {}) };
  plotly(root.barSrc)
    // frames: a replay animation (bar_core/animation.py) plays them with plotly.js's own buttons
    .then((Plotly) => Plotly.react(div, { data: figure.data || [], layout, frames: figure.frames,
                                          config: root.barConfig }))
    .then(() => {
      if (div.barFigure === text) root.error.textContent = "";
      if (figure.frames && !div.barAnimated) watchInterruptions(div);
    })
    .catch(failed);
}

// Pausing an animation (or moving its slider while it plays) interrupts plotly.js's Plotly.animate,
// whose promise then rejects with no reason and nobody to catch it: expected, not an error of the page.
function watchInterruptions(div) {
  div.barAnimated = true;
  div.on("plotly_animationinterrupted", () => { window.__barInterruptedAt = performance.now(); });
  if (window.__barRejections) return;
  window.__barRejections = true;
  window.addEventListener("unhandledrejection", (event) => {
    const recent = performance.now() - (window.__barInterruptedAt ?? -Infinity) < 2000;
    if (event.reason === undefined && recent) event.preventDefault();
  });
}
