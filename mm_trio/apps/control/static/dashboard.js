// mm-trio dashboard: talks to the control API of the server that served it (same origin).
// The bearer token is asked for once per tab (sessionStorage) or taken from "#token=..." in
// the address (a fragment never reaches the server), then sent only in the Authorization
// header: of every API call and of the event stream, which is read with fetch() streaming
// because EventSource cannot send a header. No data is ever written as HTML (textContent
// only), and no inline script or style exists (the page's CSP forbids both).
"use strict";

(() => {
  const POLL_MS = 1000; // status refresh: the table, the exposure and a chart point
  const MAX_POINTS = 900; // chart window: 15 minutes at one point a second
  const MAX_FILLS = 50; // rows in the recent-fills table
  const MAX_ACTIVITY = 100; // lines in the activity log
  const RECONNECT_MS = 2000; // event stream: wait before reconnecting
  const REFRESH_SOON_MS = 150; // after an event, refresh the status this soon (debounced)
  const TOKEN_KEY = "mm-trio.control-token";
  const COLUMNS = [
    "symbol", "state", "reason", "mid", "position", "open_orders", "fills",
    "realized", "unrealized", "fees", "total", "breakers", "exposure",
  ];
  const SIGNED = new Set(["realized", "unrealized", "total"]);
  const MONEY = new Set(["realized", "unrealized", "fees", "total", "exposure"]);
  const MONEY_DECIMALS = 4; // display only: the API's exact decimal strings are rounded here

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, text) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  let token = null;
  let pollTimer = null;
  let soonTimer = null;
  let streamAbort = null;
  let lastEventId = null;
  let generation = 0; // bumped on every (dis)connect: stale loops stop
  const points = []; // {t: uptime seconds, v: total PnL}
  const fillsSeen = new Set();

  class ApiError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field || null;
    }
  }

  // ------------------------------------------------------------------ token and API

  function fragmentToken() {
    const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (!match) return null;
    // drop it from the address bar and the history at once
    history.replaceState(null, "", location.pathname + location.search);
    try {
      return decodeURIComponent(match[1]);
    } catch (e) {
      return null;
    }
  }

  async function api(method, path, body) {
    const sent = token;
    const headers = { Authorization: "Bearer " + sent, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "the control plane cannot be reached (has the run ended?)");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (response.status === 401) {
      refused(sent);
      throw new ApiError(401, "the token was refused");
    }
    if (!response.ok) {
      const why = data && typeof data.error === "string" ? data.error : response.statusText;
      throw new ApiError(response.status, why, data && data.field);
    }
    return data;
  }

  function connect(value) {
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    generation += 1;
    $("auth").hidden = true;
    $("dash").hidden = false;
    $("forget-token").hidden = false;
    poll(generation);
    loadFills(generation).then(() => streamEvents(generation));
  }

  function disconnect(message) {
    generation += 1;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(pollTimer);
    clearTimeout(soonTimer);
    if (streamAbort) streamAbort.abort();
    setStream("off", "");
    $("dash").hidden = true;
    $("forget-token").hidden = true;
    $("auth").hidden = false;
    $("run-info").textContent = "not connected";
    const msg = $("auth-message");
    msg.textContent = message || "";
    msg.hidden = !message;
    $("token-input").focus();
  }

  // only the token that was refused: a late answer to an earlier one changes nothing
  function refused(sent) {
    if (token !== null && token === sent) {
      disconnect("The control plane refused that token: enter the run's token.");
    }
  }

  // ------------------------------------------------------------------ messages

  function showError(err, input) {
    const status = err.status ? ` (HTTP ${err.status})` : "";
    const field = err.field ? ` [field: ${err.field}]` : "";
    $("error-text").textContent = `${err.message}${status}${field}`;
    $("error").hidden = false;
    $("notice").hidden = true;
    if (input) input.classList.add("invalid");
  }

  function clearError() {
    $("error").hidden = true;
    for (const node of document.querySelectorAll("input.invalid")) node.classList.remove("invalid");
  }

  function notice(text) {
    clearError();
    $("notice").textContent = text;
    $("notice").hidden = false;
  }

  // events carry the venue's clock (ts_ns); the page's own notes, the browser's
  function activity(text, tsNs) {
    const list = $("activity");
    const stamp = clock(tsNs === undefined ? Date.now() * 1e6 : tsNs);
    list.prepend(el("li", {}, `${stamp}  ${text}`));
    while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
  }

  // ------------------------------------------------------------------ status

  async function poll(gen) {
    if (gen !== generation) return;
    try {
      render(await api("GET", "/api/status"));
    } catch (err) {
      if (gen !== generation) return;
      $("run-info").textContent = `status unavailable: ${err.message}`;
    }
    if (gen !== generation) return;
    clearTimeout(pollTimer);
    pollTimer = setTimeout(() => poll(gen), POLL_MS);
  }

  function refreshSoon() {
    const gen = generation;
    clearTimeout(soonTimer);
    soonTimer = setTimeout(() => {
      clearTimeout(pollTimer);
      poll(gen);
    }, REFRESH_SOON_MS);
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return (h ? `${h}h ` : "") + (h || m ? `${m}m ` : "") + `${s % 60}s`;
  }

  // an exact decimal string rounded for the eye (never sent back: controls send strings)
  function money(value) {
    if (value === null || value === undefined) return "–";
    const x = Number(value);
    return Number.isFinite(x) ? x.toFixed(MONEY_DECIMALS) : String(value);
  }

  function signClass(node, value) {
    const x = Number(value);
    node.classList.toggle("pos", x > 0);
    node.classList.toggle("neg", x < 0);
  }

  function render(status) {
    const names = Object.keys(status.symbols);
    $("run-info").textContent =
      `venue ${status.venue} · up ${duration(status.uptime_seconds)} · ` +
      `${names.length} symbol${names.length === 1 ? "" : "s"}`;
    const badge = $("kill-badge");
    badge.hidden = !status.killed;
    badge.textContent = status.killed ? `KILLED: ${status.kill_reason}` : "";
    renderSymbols(status);
    renderExposure(status);
    addPoint(status.uptime_seconds, status.pnl.total);
  }

  function cellValues(sym) {
    const breakers = Object.entries(sym.breakers || {})
      .filter(([, tripped]) => tripped)
      .map(([name]) => name);
    return {
      symbol: sym.symbol,
      state: sym.state + (sym.paused ? " (paused)" : "") + (sym.reduce_only ? " (reduce-only)" : ""),
      reason: sym.reason,
      mid: sym.mid === null ? "–" : sym.mid,
      position: sym.position,
      open_orders: String(sym.open_orders),
      fills: String(sym.fills),
      realized: sym.pnl.realized,
      unrealized: sym.pnl.unrealized,
      fees: sym.pnl.fees,
      total: sym.pnl.total,
      breakers:
        (breakers.length ? breakers.join(", ") : "–") +
        (sym.breaker_trips ? ` · ${sym.breaker_trips} trip${sym.breaker_trips === 1 ? "" : "s"}` : ""),
      exposure: sym.exposure,
    };
  }

  function newRow(symbol) {
    const row = el("tr", { "data-symbol": symbol });
    for (const col of COLUMNS) {
      const numeric = !["symbol", "state", "reason", "breakers"].includes(col);
      row.append(el("td", numeric ? { "data-col": col, class: "num" } : { "data-col": col }));
    }
    const actions = el("td", { class: "actions" });
    const toggle = el("button", { type: "button", "data-action": "pause" }, "Pause");
    toggle.addEventListener("click", () => {
      const action = toggle.getAttribute("data-action");
      control(toggle, `/api/${action}`, { symbol }, `${action}d ${symbol}`);
    });
    const remove = el("button", { type: "button", "data-action": "remove", class: "danger" }, "Remove");
    remove.addEventListener("click", () => {
      const path = "/api/symbols/" + symbol.split("/").map(encodeURIComponent).join("/");
      control(remove, path, undefined, `removed ${symbol} (its orders are cancelled)`, "DELETE");
    });
    actions.append(toggle, remove);
    row.append(actions);
    return row;
  }

  function renderSymbols(status) {
    const body = $("symbols-body");
    const names = Object.keys(status.symbols);
    for (const row of [...body.children]) {
      if (!(row.getAttribute("data-symbol") in status.symbols)) row.remove();
    }
    for (const name of names) {
      const sym = status.symbols[name];
      let row = body.querySelector(`tr[data-symbol="${CSS.escape(name)}"]`);
      if (!row) row = newRow(name);
      body.append(row); // keeps the API's order
      const values = cellValues(sym);
      for (const col of COLUMNS) {
        const cell = row.querySelector(`td[data-col="${col}"]`);
        cell.textContent = MONEY.has(col) ? money(values[col]) : values[col];
        if (SIGNED.has(col)) signClass(cell, values[col]);
      }
      row.querySelector('td[data-col="fills"]').title = `${sym.buys} buys, ${sym.sells} sells`;
      const stateCell = row.querySelector('td[data-col="state"]');
      stateCell.className = `state-${sym.state}`;
      row.setAttribute("data-state", sym.state);
      row.setAttribute("data-open-orders", String(sym.open_orders));
      row.setAttribute("data-fills", String(sym.fills));
      const toggle = row.querySelector("button[data-action='pause'], button[data-action='resume']");
      if (!toggle.disabled) {
        toggle.setAttribute("data-action", sym.paused ? "resume" : "pause");
        toggle.textContent = sym.paused ? "Resume" : "Pause";
      }
    }
    $("no-symbols").hidden = names.length > 0;
    const foot = $("symbols-total");
    $("total-count").textContent = `${names.length} running`;
    for (const key of ["realized", "unrealized", "fees", "total"]) {
      const cell = foot.querySelector(`td[data-col="${key}"]`);
      cell.textContent = money(status.pnl[key]);
      if (SIGNED.has(key)) signClass(cell, status.pnl[key]);
    }
    foot.querySelector('td[data-col="exposure"]').textContent = money(status.exposure.total);
  }

  function renderExposure(status) {
    const exp = status.exposure;
    const max = Number(exp.max_total);
    const meter = $("exposure-meter");
    meter.max = max > 0 ? max : 1;
    meter.high = meter.max * 0.8;
    meter.value = Math.min(Number(exp.total), meter.max);
    const pct = max > 0 ? ` (${((100 * Number(exp.total)) / max).toFixed(1)}%)` : "";
    $("exposure-text").textContent = `${money(exp.total)} / ${exp.max_total}${pct}`;
    $("exposure-caps").textContent =
      `caps: total ${exp.max_total}, per symbol ${exp.max_symbol}, fair share now ` +
      `${money(exp.fair_share)}` + (exp.reduce_only_total ? " · TOTAL CAP REACHED: every symbol reduce-only" : "");
    const box = $("exposure-symbols");
    box.replaceChildren();
    const cap = Number(exp.max_symbol);
    for (const [name, sym] of Object.entries(status.symbols)) {
      const row = el("div", { class: "gauge", "data-symbol": name });
      const value = sym.exposure === null ? 0 : Number(sym.exposure);
      const m = el("meter", { min: "0", max: String(cap > 0 ? cap : 1) });
      m.high = (cap > 0 ? cap : 1) * 0.8;
      m.value = Math.min(value, cap > 0 ? cap : 1);
      row.append(el("span", { class: "gauge-label" }, name), m,
        el("span", { class: "num" }, `${money(sym.exposure)} / ${exp.max_symbol}`));
      if (sym.reduce_only) row.append(el("span", { class: "flag" }, "reduce-only"));
      box.append(row);
    }
    const lim = status.limiter;
    $("limiter").textContent =
      `rate limiter: weight ${lim.weight_used}/${lim.weight_limit} per min · orders ` +
      `${lim.orders_10s_used}/${lim.orders_10s_limit} per 10 s · queued ${lim.queued}` +
      (lim.paused_for_seconds > 0 ? ` · PAUSED by the venue for ${lim.paused_for_seconds}s` : "");
  }

  // ------------------------------------------------------------------ chart

  function addPoint(t, total) {
    const v = Number(total);
    if (!Number.isFinite(v)) return;
    if (points.length && t <= points[points.length - 1].t) return; // a refresh in the same tick
    points.push({ t, v });
    if (points.length > MAX_POINTS) points.shift();
    drawChart();
  }

  function drawChart() {
    const svg = $("chart");
    const width = Math.max(200, Math.round(svg.clientWidth || 800));
    const height = Math.max(100, Math.round(svg.clientHeight || 220));
    const pad = 18;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("data-points", String(points.length));
    const t0 = points[0].t;
    const t1 = points[points.length - 1].t;
    let lo = Math.min(0, ...points.map((p) => p.v));
    let hi = Math.max(0, ...points.map((p) => p.v));
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * width : width);
    const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (height - 2 * pad);
    $("chart-line").setAttribute(
      "points", points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "));
    const zero = $("chart-zero");
    zero.setAttribute("x2", String(width));
    zero.setAttribute("y1", y(0).toFixed(1));
    zero.setAttribute("y2", y(0).toFixed(1));
    $("chart-max").textContent = hi.toPrecision(4);
    $("chart-min").textContent = lo.toPrecision(4);
    $("chart-min").setAttribute("y", String(height - 4));
    $("chart-span").setAttribute("x", String(width - 4));
    $("chart-span").setAttribute("y", String(height - 4));
    $("chart-span").textContent = `last ${duration(t1 - t0)}`;
    const last = $("chart-last");
    last.textContent = String(points[points.length - 1].v.toPrecision(6));
    signClass(last, points[points.length - 1].v);
  }

  // ------------------------------------------------------------------ fills and events

  function clock(tsNs) {
    return new Date(tsNs / 1e6).toISOString().slice(11, 23); // HH:MM:SS.mmm, UTC
  }

  function addFill(seq, symbol, tsNs, fill) {
    if (fillsSeen.has(seq)) return;
    fillsSeen.add(seq);
    const row = el("tr", { class: fill.side, "data-seq": String(seq), "data-symbol": symbol });
    const cells = [
      ["time", clock(tsNs)], ["symbol", symbol], ["side", fill.side],
      ["price", fill.price], ["qty", fill.qty], ["fee", `${fill.fee} ${fill.fee_asset}`],
      ["level", String(fill.level)], ["maker", fill.maker ? "maker" : "taker"],
    ];
    for (const [col, text] of cells) {
      const numeric = ["price", "qty", "fee", "level"].includes(col);
      row.append(el("td", numeric ? { "data-col": col, class: "num" } : { "data-col": col }, text));
    }
    const body = $("fills-body");
    body.prepend(row);
    while (body.children.length > MAX_FILLS) {
      fillsSeen.delete(Number(body.lastElementChild.getAttribute("data-seq")));
      body.lastElementChild.remove();
    }
    $("no-fills").hidden = true;
  }

  async function loadFills(gen) {
    try {
      const data = await api("GET", `/api/fills?limit=${MAX_FILLS}`);
      if (gen !== generation) return;
      for (const f of data.fills) {
        addFill(f.seq, f.symbol, f.ts_ns, f);
        lastEventId = Math.max(lastEventId || 0, f.seq);
      }
    } catch (err) {
      if (gen === generation) activity(`recent fills unavailable: ${err.message}`);
    }
  }

  function setStream(state, text) {
    const badge = $("stream-state");
    badge.textContent = `events: ${text || state}`;
    badge.classList.toggle("live", state === "live");
    badge.setAttribute("data-state", state);
  }

  function onEvent(kind, id, message) {
    if (id !== null) lastEventId = id;
    const d = message.data || {};
    const sym = message.symbol;
    const ts = message.ts_ns;
    const why = d.reason ? ` (${d.reason})` : "";
    switch (kind) {
      case "fill":
        addFill(id, sym, message.ts_ns, d);
        return; // the table's counts follow at the next status refresh
      case "state":
        activity(`${sym}: ${d.from} → ${d.state}${why}`, ts);
        break;
      case "breaker":
        activity(`${sym}: breaker ${d.breaker} ${d.tripped ? "tripped" : "cleared"}${why}`, ts);
        break;
      case "governor":
        activity(`governor (${[d.scope, sym].filter(Boolean).join(" ")}): ${d.state}${why}`, ts);
        break;
      case "symbol":
        activity(`${sym} ${d.action}`, ts);
        break;
      case "control":
        activity(`operator ${d.action}${sym ? ` ${sym}` : ""}${why}`, ts);
        break;
      default:
        activity(`${kind} ${sym}`, ts);
    }
    refreshSoon();
  }

  function dispatch(block) {
    let kind = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "id" && /^\d+$/.test(value)) id = Number(value);
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    if (kind === "dropped") {
      activity("event stream dropped (too slow): reconnecting");
      return;
    }
    try {
      onEvent(kind, id, JSON.parse(data.join("\n")));
    } catch (err) {
      activity(`unreadable event: ${err.message}`);
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function streamEvents(gen) {
    while (gen === generation) {
      const abort = new AbortController();
      streamAbort = abort;
      const sent = token;
      try {
        const headers = { Authorization: "Bearer " + sent, Accept: "text/event-stream" };
        if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
        const response = await fetch("/api/events", {
          headers, cache: "no-store", credentials: "omit", signal: abort.signal,
        });
        if (response.status === 401) {
          refused(sent);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        setStream("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done || gen !== generation) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (err) {
        if (abort.signal.aborted || gen !== generation) return;
      }
      if (gen !== generation) return;
      setStream("down", "reconnecting…");
      await sleep(RECONNECT_MS);
    }
  }

  // ------------------------------------------------------------------ controls

  async function control(button, path, body, done, method = "POST", input = null) {
    clearError();
    button.disabled = true;
    try {
      const answer = await api(method, path, body);
      notice(done);
      refreshSoon();
      return answer;
    } catch (err) {
      if (err.status !== 401) showError(err, input);
      return null;
    } finally {
      button.disabled = false;
    }
  }

  // "step=0.002 levels_below=3" (or comma-separated): like `mm-trio symbols add --set`,
  // integers and booleans as such and anything else as a string, so decimals stay exact
  function parseOverrides(text) {
    const grid = {};
    for (const item of text.split(/[\s,]+/).filter(Boolean)) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new ApiError(0, `grid overrides: expected KEY=VALUE (e.g. step=0.002), got "${item}"`, "grid");
      const key = item.slice(0, eq);
      const raw = item.slice(eq + 1);
      let value = raw;
      if (/^(true|false)$/i.test(raw)) value = raw.toLowerCase() === "true";
      else if (/^-?\d+$/.test(raw)) value = Number(raw);
      grid[key] = value;
    }
    return grid;
  }

  async function addSymbol(event) {
    event.preventDefault();
    clearError();
    const symbolInput = $("add-symbol");
    const gridInput = $("add-grid");
    const symbol = symbolInput.value.trim().toUpperCase();
    let grid;
    try {
      grid = parseOverrides(gridInput.value);
    } catch (err) {
      showError(err, gridInput);
      return;
    }
    const body = { symbol };
    if (Object.keys(grid).length) body.grid = grid;
    const button = $("add-submit");
    clearError();
    button.disabled = true;
    try {
      await api("POST", "/api/symbols", body);
      notice(`added ${symbol}`);
      symbolInput.value = "";
      gridInput.value = "";
      refreshSoon();
    } catch (err) {
      if (err.status !== 401) {
        const field = err.field || "";
        showError(err, field.startsWith("grid") ? gridInput : symbolInput);
      }
    } finally {
      button.disabled = false;
    }
  }

  function kill(event) {
    event.preventDefault();
    const reasonInput = $("kill-reason");
    const reason = reasonInput.value.trim();
    control($("kill-submit"), "/api/kill", reason ? { reason } : {},
      "kill switch on: every order is being cancelled", "POST", reasonInput)
      .then((answer) => { if (answer) reasonInput.value = ""; });
  }

  function start() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) {
        $("auth-message").textContent = "Enter the token.";
        $("auth-message").hidden = false;
        return;
      }
      $("token-input").value = "";
      connect(value);
    });
    $("forget-token").addEventListener("click", () => disconnect(""));
    $("error-dismiss").addEventListener("click", clearError);
    $("add-form").addEventListener("submit", addSymbol);
    $("kill-form").addEventListener("submit", kill);
    $("pause-all").addEventListener("click", (e) =>
      control(e.currentTarget, "/api/pause", {}, "paused every running symbol"));
    $("resume-all").addEventListener("click", (e) =>
      control(e.currentTarget, "/api/resume", {}, "resumed every symbol (kill switch lifted)"));
    const given = fragmentToken() || sessionStorage.getItem(TOKEN_KEY);
    if (given) connect(given);
    else disconnect("");
  }

  start();
})();
