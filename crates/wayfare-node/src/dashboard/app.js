// The Wayfare dashboard: reads the daemon's REST API (the same one the CLI uses) with the
// bearer token kept for this tab only, polls it, and posts the user's actions to it.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("wayfare-token");
let timers = [];
const samples = []; // [unix ms, bytes] of the live session, for the throughput graph
let sessionId = null;

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (r.status === 401) {
    logout("The token was refused: " + (data && data.error ? data.error : "401"));
    throw new Error("unauthorized");
  }
  if (!r.ok) throw new Error(data && data.error ? data.error : r.status + "");
  return data;
}

function eth(wei) {
  if (wei === null || wei === undefined) return "-";
  const w = BigInt(wei);
  const whole = w / 10n ** 18n;
  const frac = (w % 10n ** 18n).toString().padStart(18, "0").slice(0, 6);
  return whole + "." + frac + " ETH";
}
const short = (a) => (a && a.length > 14 ? a.slice(0, 8) + "…" + a.slice(-4) : a || "");

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tableId, rows, make) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const r of rows) body.appendChild(make(r));
}

function show(view) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const t of document.querySelectorAll(".tab"))
    t.setAttribute("aria-current", t.dataset.view === view ? "true" : "false");
}

function note(msg, isError) {
  const p = $("action-msg");
  p.textContent = msg;
  p.className = isError ? "error" : "note";
  p.hidden = !msg;
}

async function act(what, method, path, body) {
  try {
    note(what + "…");
    await api(method, path, body);
    note(what + ": done");
  } catch (e) {
    if (e.message !== "unauthorized") note(what + " failed: " + e.message, true);
  }
  refresh();
}

function drawGraph() {
  const c = $("throughput");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (samples.length < 2) return;
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i][0] - samples[i - 1][0]) / 1000;
    rates.push(dt > 0 ? (samples[i][1] - samples[i - 1][1]) / dt : 0);
  }
  const max = Math.max(1, ...rates);
  g.strokeStyle = "#17324d";
  g.beginPath();
  rates.forEach((r, i) => {
    const x = (i / Math.max(1, rates.length - 1)) * (c.width - 4) + 2;
    const y = c.height - 2 - (r / max) * (c.height - 14);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#555";
  g.fillText((rates[rates.length - 1] / 1e6 * 8).toFixed(2) + " Mbit/s (peak " + (max / 1e6 * 8).toFixed(2) + ")", 6, 12);
}

function renderSession(s) {
  const live = s.sessions.find((x) => x.role === "buyer" && x.phase !== "ended" && x.phase !== "paused");
  const paused = s.sessions.filter((x) => x.role === "buyer" && x.phase === "paused").length;
  $("session").hidden = !live;
  $("no-session").hidden = !!live;
  $("no-session").textContent = "Not connected." + (paused ? " " + paused + " paused channel(s): connecting to that seller again reuses it." : "");
  if (!live) {
    sessionId = null;
    samples.length = 0;
    return;
  }
  if (live.id !== sessionId) {
    sessionId = live.id;
    samples.length = 0;
  }
  samples.push([Date.now(), live.bytes]);
  if (samples.length > 120) samples.shift();
  $("s-seller").textContent = live.counterparty;
  $("s-service").textContent = live.service;
  $("s-phase").textContent = live.phase + (live.live ? " (live)" : "");
  $("s-bytes").textContent = live.bytes.toLocaleString("en") + " B";
  $("s-seconds").textContent = live.seconds + " s";
  $("s-owed").textContent = eth(live.owed_wei);
  $("s-paid").textContent = eth(live.paid_wei);
  $("s-left").textContent = eth(live.deposit_left_wei);
  const m = live.measured;
  $("s-quality").textContent = m
    ? "first byte " + (m.first_byte_ms ?? "-") + " ms, peak " + ((m.peak_down_bps || 0) / 1e6 * 8).toFixed(2) + " Mbit/s, lost " + m.lost + "/" + (m.answered + m.lost)
    : "-";
  drawGraph();
}

function renderNode(s) {
  $("who").textContent = s.roles.join(" + ") + " · " + short(s.buyer || s.seller || "");
  $("version").textContent = s.version;
  $("roles").textContent = s.roles.join(", ");
  $("chain").textContent = "block " + s.chain_block + " on chain " + s.chain_id + (s.chain_ok ? "" : " (unreachable: retrying)");
  $("p2p-peers").textContent = String(s.p2p_peers);
  $("relay").textContent = "advertise " + s.advertise + (s.relays.length ? ", " + s.relays.length + " relay(s)" : ", no relay") + (s.relay_server ? ", relaying for others" : "");
  const l = s.lockdown;
  $("lockdown").textContent = !l ? "-" : l.engaged
    ? "up: only " + [...l.tunnels, ...l.endpoints, ...l.hosts].join(", ") + " reachable outside"
    : "off" + (l.kill_switch ? " (goes up at the next WireGuard connect)" : "");
}

async function refresh() {
  try {
    const s = await api("GET", "/v1/status");
    renderNode(s);
    renderSession(s);
    const buyer = !!s.buyer;
    if (buyer) {
      const offers = await api("GET", "/v1/offers");
      fill("offers", offers, (o) => {
        const tr = document.createElement("tr");
        tr.className = "offer";
        cell(tr, short(o.seller)).title = o.seller;
        cell(tr, o.region);
        cell(tr, o.services.join(", "));
        cell(tr, o.price_per_mib_wei, "num");
        cell(tr, o.price_per_second_wei, "num");
        cell(tr, o.score === null ? "new" : o.score.toFixed(3), "num");
        cell(tr, (o.exit_allow || []).length ? "internet + " + o.exit_allow.join(", ") : "internet");
        const td = document.createElement("td");
        for (const service of o.services) {
          const b = document.createElement("button");
          b.className = "connect";
          b.dataset.service = service;
          b.textContent = "Connect (" + service + ")";
          b.onclick = () => act("Connecting to " + short(o.seller), "POST", "/v1/connect", { seller: o.seller, service });
          td.appendChild(b);
        }
        tr.appendChild(td);
        return tr;
      });
    }
    $("seller").hidden = !s.seller;
    $("not-seller").hidden = !!s.seller;
    if (s.seller) {
      const st = await api("GET", "/v1/seller");
      $("earned").textContent = eth(st.earned_wei);
      $("unsettled").textContent = eth(st.unsettled_wei);
      $("withdrawable").textContent = eth(st.withdrawable_wei);
      $("reachability").textContent = st.reachability || "-";
      $("reachability").className = st.reachable === false ? "bad" : "";
      fill("seller-sessions", st.sessions.filter((x) => x.phase !== "ended"), (x) => {
        const tr = document.createElement("tr");
        tr.className = "seller-session";
        cell(tr, short(x.counterparty));
        cell(tr, x.service);
        cell(tr, x.phase);
        cell(tr, String(x.bytes), "num bytes");
        cell(tr, eth(x.owed_wei), "num");
        cell(tr, eth(x.paid_wei), "num");
        return tr;
      });
    }
    const chans = await api("GET", "/v1/channels");
    fill("channels", chans, (c) => {
      const tr = document.createElement("tr");
      tr.className = "channel";
      cell(tr, short(c.id)).title = c.id;
      cell(tr, c.role);
      cell(tr, c.service);
      cell(tr, c.state);
      cell(tr, eth(c.deposit_wei), "num");
      cell(tr, eth(c.voucher_wei), "num");
      cell(tr, (c.pending_actions || []).join(", "));
      return tr;
    });
  } catch (e) {
    if (e.message !== "unauthorized") note("The daemon did not answer: " + e.message, true);
  }
}

function start() {
  for (const t of timers) clearInterval(t);
  timers = [];
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  show("buy");
  refresh();
  timers.push(setInterval(refresh, 1000));
}

function logout(why) {
  for (const t of timers) clearInterval(t);
  timers = [];
  token = null;
  sessionStorage.removeItem("wayfare-token");
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  $("login-error").hidden = !why;
}

async function tryToken(t) {
  token = t;
  const r = await fetch("/v1/status", { headers: { Authorization: "Bearer " + t } });
  if (r.status === 401) {
    logout("Wrong token: use the one in the daemon's DATA_DIR/api-token, or run `wayfare dashboard`.");
    return;
  }
  sessionStorage.setItem("wayfare-token", t);
  start();
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const t of document.querySelectorAll(".tab")) t.onclick = () => show(t.dataset.view);
  $("login-form").onsubmit = (e) => {
    e.preventDefault();
    tryToken($("token").value.trim());
  };
  $("logout").onclick = () => logout("");
  $("disconnect").onclick = () => act("Disconnecting", "POST", "/v1/disconnect", {});
  $("disconnect-close").onclick = () => act("Disconnecting and closing", "POST", "/v1/disconnect", { close: true });
  $("withdraw").onclick = () => act("Withdrawing", "POST", "/v1/withdraw");
  window.addEventListener("hashchange", fromLink);
  if (!(await fromLink()) && token) tryToken(token);
});

// A one-time link (`wayfare dashboard`): its code, in the URL fragment, is traded for the token.
async function fromLink() {
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (!code) return false;
  history.replaceState(null, "", location.pathname);
  const r = await fetch("/v1/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }) });
  if (r.ok) tryToken((await r.json()).token);
  else logout("This link was used or has expired: run `wayfare dashboard` again.");
  return true;
}
