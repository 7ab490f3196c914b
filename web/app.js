/* Sightline's browser app: map, trajectories, search, analytics and live alerts over the HTTP API. */
"use strict";

/* ---------- the one door to the API: session cookie, CSRF token, case headers ---------- */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const CASE_KEY = "sightline-case", REASON_KEY = "sightline-reason";
// Routes the server binds to a case (services/api/security.py ROUTES, case=True): searches, trajectories,
// analytics, sightings listings and exports. The crop of one sighting (/sightings/{id}/crop) is not among them.
const CASE_BOUND = /^\/(search\/|trajectories\/|stays\/|clones(\?|$)|co-travel\/|sightings(\/[^/?]+)?(\?|$)|watchlists\/[^/]+\/export)/;
const HEADER_TEXT = /^[\x20-\x7e\xa0-\xff]*$/;  // what an HTTP header can carry (ISO-8859-1, no control characters)
const CASE_REF = /^[\p{L}\p{N}_./:# -]{1,64}$/u;  // as the server checks it (Python's \w)

class CaseMissing extends Error {}
class SignedOut extends Error {}

const cookie = (name) => {
  const found = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
};

function currentCase() {
  return { ref: (sessionStorage.getItem(CASE_KEY) || "").trim(), reason: (sessionStorage.getItem(REASON_KEY) || "").trim() };
}

/* Why the case bar cannot be sent as it is, or "" when it can. */
function caseProblem() {
  const { ref, reason } = currentCase();
  if (!ref && !reason) return "Enter a case reference and a reason first: every search is recorded under them.";
  if (!ref) return "Enter the case reference these searches serve.";
  if (!reason) return "Enter the reason for these searches.";
  if (!CASE_REF.test(ref) || !HEADER_TEXT.test(ref)) return "A case reference is 1–64 Latin letters, digits, spaces or . / : # _ -";
  return "";
}

const api = async (path, options = {}) => {
  const method = (options.method || "GET").toUpperCase();
  const headers = new Headers(options.headers || {});
  const problem = caseProblem();
  // A viewer's search goes out as it is: the server's 403 says which role it needs.
  if (CASE_BOUND.test(path) && problem && (!me || hasRole("investigator"))) {
    noteCase(problem, true);
    throw new CaseMissing(problem);
  }
  if (!problem) {
    const { ref, reason } = currentCase();
    headers.set("X-Case", ref);
    headers.set("X-Reason", encodeURIComponent(reason));  // any script: the server decodes UTF-8
  }
  if (!SAFE_METHODS.has(method)) {
    const csrf = cookie("sightline_csrf");
    if (csrf) headers.set("X-CSRF-Token", csrf);
  }
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : text;
    if (response.status === 401 && path !== "/auth/login") {
      showLogin(me ? "Your session has ended: sign in again." : "");
      throw new SignedOut(detail || "sign in");
    }
    const status = response.status === 403 ? "403 (not allowed)" : response.status;
    const error = new Error(`${status}: ${detail || response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};
const fmtTime = (iso) => new Date(iso).toLocaleString();
const toIso = (local) => (local ? new Date(local).toISOString() : null);

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}

async function guarded(fn) {
  showMessage("");
  try { await fn(); } catch (err) {
    if (err instanceof CaseMissing || err instanceof SignedOut) return;  // said next to the case bar / on the sign-in page
    showMessage(err.message || String(err));
  }
}

/* ---------- map ---------- */
const map = L.map("map", { preferCanvas: true, zoomControl: true }).setView([31.25, 121.3], 12);
const cameraLayer = L.layerGroup().addTo(map);
const overlay = L.layerGroup().addTo(map);
const cameras = new Map();

async function loadBase() {
  const config = await api("/map/config");
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { attribution: config.attribution || "", maxZoom: 19 }).addTo(map);
  }
  if (config.roads) {
    const roads = await api("/map/roads");
    L.geoJSON(roads, { style: { color: "#9aa7b5", weight: 2 }, interactive: false }).addTo(map);
  }
}

async function loadCameras() {
  const list = await api("/cameras");
  cameraLayer.clearLayers();
  const bounds = [];
  for (const c of list) {
    cameras.set(c.id, c);
    L.circleMarker([c.lat, c.lon], { radius: 4, color: "#2563a8", weight: 1, fillOpacity: 0.8 })
      .bindTooltip(`${c.name} (${c.id})`).addTo(cameraLayer);
    bounds.push([c.lat, c.lon]);
  }
  if (bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
  document.body.dataset.cameras = String(list.length);
}

/* ---------- trajectory ---------- */
let replayPoints = [];
let replayMarker = null;

function sightingItem(s, index) {
  const cam = cameras.get(s.camera_id);
  const item = el("li", { "data-sighting": s.id },
    index !== undefined ? el("span", { class: "num" }, index + 1) : "",
    el("img", { src: `/sightings/${s.id}/crop`, alt: `evidence crop of ${s.kind} ${s.id}`, loading: "lazy" }),
    el("div", {},
      el("div", {}, (s.attributes && s.attributes.plate) || s.kind, s.score !== undefined ? ` · score ${Number(s.score).toFixed(3)}` : ""),
      el("div", { class: "meta" }, `${cam ? cam.name : s.camera_id} · ${fmtTime(s.ts)}`)));
  const plate = s.attributes && s.attributes.plate;
  if (plate) {
    item.append(el("button", { type: "button", class: "secondary", onclick: () => showTrajectory(plate) }, "Trajectory"));
  }
  return item;
}

async function trajectoryOf(plate, start, end) {
  const params = new URLSearchParams();
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  return api(`/trajectories/${encodeURIComponent(plate)}?${params}`);
}

async function showTrajectory(plate, start, end, prefetched) {
  if (!location.hash.startsWith("#map")) location.hash = "#map";
  $("traj-plate").value = plate;
  overlay.clearLayers();
  const list = $("trajectory-list");
  list.replaceChildren();
  const traj = await (prefetched || trajectoryOf(plate, start, end));
  const points = traj.points;
  if (!points.length) {
    showMessage(`No sightings of ${plate} in that time range.`, "info");
    document.body.dataset.trajectory = "0";
    return;
  }
  const latlngs = points.map((p) => [p.lat, p.lon]);
  L.polyline(latlngs, { color: "#d33", weight: 3 }).addTo(overlay);
  // Every stop is numbered; past 100 stops only every k-th number is a DOM label (they would overlap anyway),
  // the others are canvas circles that show their number on hover.
  const every = Math.ceil(points.length / 100);
  points.forEach((p, i) => {
    const popup = `${i + 1}. ${p.camera_name || p.camera_id}<br>${fmtTime(p.ts)}`;
    const labelled = i % every === 0 || i === points.length - 1;
    (labelled ? L.marker([p.lat, p.lon], { icon: L.divIcon({ className: "stop-label", html: String(i + 1), iconSize: null }) })
      : L.circleMarker([p.lat, p.lon], { radius: 5, color: "#2563a8", fillOpacity: 1 }).bindTooltip(String(i + 1)))
      .bindPopup(popup).addTo(overlay);
  });
  listStops(plate, traj, 0);
  // Speeds: permanent labels while they stay readable, else on hover (a canvas path per leg, no DOM per label).
  const labelled = (traj.legs || []).length <= 60;
  for (const leg of traj.legs || []) {
    if (leg.speed_kmh === null || leg.speed_kmh === undefined) continue;
    const text = `${Math.round(leg.speed_kmh)} km/h`;
    const segment = L.polyline([[leg.from.lat, leg.from.lon], [leg.to.lat, leg.to.lon]], { opacity: 0, weight: 10 })
      .bindTooltip(text, { sticky: true }).addTo(overlay);
    if (labelled) {
      const mid = [(leg.from.lat + leg.to.lat) / 2, (leg.from.lon + leg.to.lon) / 2];
      L.marker(mid, { icon: L.divIcon({ className: "leg-speed", html: text, iconSize: null }), interactive: false }).addTo(overlay);
    }
    segment.bringToBack();
  }
  for (const stay of traj.stays || []) {
    L.marker([stay.lat, stay.lon], { icon: L.divIcon({ className: "stay-label", html: "stay", iconSize: null }) })
      .bindPopup(`Stay: ${stay.visits} visit(s), ${Math.round(stay.dwell_s / 60)} min`).addTo(overlay);
  }
  map.fitBounds(latlngs, { padding: [40, 40], maxZoom: 15 });
  replayPoints = points;
  const slider = $("replay-slider");
  slider.max = String(points.length - 1);
  slider.value = "0";
  $("replay").hidden = false;
  replayTo(0);
  document.body.dataset.trajectory = String(points.length);
}

const LIST_PAGE = 100;  // the sightings list grows a page at a time: a long trajectory paints at once

function listStops(plate, traj, from) {
  const list = $("trajectory-list");
  const more = list.querySelector("li.more");
  if (more) more.remove();
  const items = document.createDocumentFragment();
  traj.points.slice(from, from + LIST_PAGE).forEach((p, k) => {
    const i = from + k;
    const leg = i > 0 ? traj.legs[i - 1] : null;
    const item = sightingItem({ id: p.sighting_id, kind: "vehicle", camera_id: p.camera_id, ts: p.ts,
                                attributes: { plate } }, i);
    if (leg && leg.speed_kmh !== null) item.querySelector(".meta").append(` · ${Math.round(leg.speed_kmh)} km/h from ${i}`);
    items.append(item);
  });
  if (from + LIST_PAGE < traj.points.length) {
    items.append(el("li", { class: "more" }, el("button", { type: "button", class: "secondary",
      onclick: () => listStops(plate, traj, from + LIST_PAGE) }, `Show ${Math.min(LIST_PAGE, traj.points.length - from - LIST_PAGE)} more`)));
  }
  list.append(items);
}

function replayTo(i) {
  const p = replayPoints[i];
  if (!p) return;
  if (replayMarker) overlay.removeLayer(replayMarker);
  replayMarker = L.circleMarker([p.lat, p.lon], { radius: 9, color: "#f5a623", weight: 3 }).addTo(overlay);
  $("replay-time").textContent = `${i + 1}/${replayPoints.length} · ${fmtTime(p.ts)}`;
}

$("replay-slider").addEventListener("input", (e) => replayTo(Number(e.target.value)));

$("trajectory-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const plate = $("traj-plate").value.trim().toUpperCase();
  guarded(() => showTrajectory(plate, toIso($("traj-start").value), toIso($("traj-end").value)));
});

let suggestTimer = null;
$("traj-plate").addEventListener("input", (e) => {
  clearTimeout(suggestTimer);
  const q = e.target.value.trim().toUpperCase();
  if (q.length < 3 || caseProblem() || !hasRole("investigator")) return;  // suggestions are searches too: only under a case
  suggestTimer = setTimeout(async () => {
    try {
      const found = await api(`/search/plates?q=${encodeURIComponent(q)}&mode=fuzzy&limit=10`);
      $("plate-suggestions").replaceChildren(...found.results.map((r) => el("option", { value: r.plate })));
    } catch (_) { /* suggestions are a convenience; the search itself reports errors */ }
  }, 250);
});

/* ---------- search ---------- */
function showResults(target, sightings, emptyText) {
  const list = $(target);
  list.replaceChildren(...sightings.map((s) => sightingItem(s)));
  if (!sightings.length) showMessage(emptyText, "info");
  else list.scrollIntoView({ block: "start" });
  document.body.dataset.results = String(sightings.length);
}

$("plate-search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const q = $("plate-q").value.trim();
    const found = await api(`/search/plates?q=${encodeURIComponent(q)}&mode=${$("plate-mode").value}`);
    const sightings = found.results.flatMap((r) => r.sightings.map((s) => ({ ...s, score: r.score })));
    showResults("search-results", sightings, "No plate matches.");
  });
});

$("attr-search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const form = new FormData(e.target);
    const body = {};
    for (const [k, v] of form.entries()) if (v) body[k] = v;
    const found = await api("/search/attributes", { method: "POST", headers: { "Content-Type": "application/json" },
                                                     body: JSON.stringify(body) });
    showResults("search-results", found.sightings, "Nothing matches those attributes.");
  });
});

async function searchByImage(file, kind) {
  const form = new FormData();
  form.append("file", file);
  form.append("kind", kind);
  const found = await api("/search/image", { method: "POST", body: form });
  showResults("search-results", found.results.map((r) => ({ ...r.sighting, score: r.score })), "No similar sightings.");
}

$("image-search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const file = $("image-file").files[0];
  if (!file) { showMessage("Choose or drop a photo first."); return; }
  guarded(() => searchByImage(file, $("image-kind").value));
});

const drop = $("drop-zone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) guarded(() => searchByImage(file, $("image-kind").value));
});
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("image-file").click(); });

$("face-search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const file = $("face-file").files[0];
  if (!file) { showMessage("Choose a face photo first."); return; }
  guarded(async () => {
    const form = new FormData();
    form.append("file", file);
    const found = await api("/search/face", { method: "POST", body: form });
    showResults("search-results", found.results.map((r) => ({ ...r.sighting, score: r.score })), "No sighting of this face.");
  });
});

/* ---------- analytics ---------- */
let areaPoints = [];
let areaShape = null;
map.on("click", (e) => {
  if (!location.hash.startsWith("#analytics")) return;
  areaPoints.push([e.latlng.lat, e.latlng.lng]);
  if (areaShape) overlay.removeLayer(areaShape);
  areaShape = L.polygon(areaPoints, { color: "#7c3aed" }).addTo(overlay);
});
$("area-clear").addEventListener("click", () => {
  areaPoints = [];
  if (areaShape) overlay.removeLayer(areaShape);
  areaShape = null;
});

$("area-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    if (areaPoints.length < 3) throw new Error("Draw an area first: click at least 3 points on the map.");
    const ring = [...areaPoints, areaPoints[0]].map(([lat, lon]) => [lon, lat]);
    const body = { areas: [{ polygon: { type: "Polygon", coordinates: [ring] },
                              start: toIso($("area-start").value), end: toIso($("area-end").value) }] };
    const found = await api("/search/areas", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(body) });
    const list = $("analytics-results");
    list.replaceChildren(...found.results.map((r) => el("li", {},
      el("div", {}, r.plate || r.key, el("div", { class: "meta" }, `${r.sightings.length} sighting(s)`)),
      r.plate ? el("button", { type: "button", class: "secondary", onclick: () => showTrajectory(r.plate) }, "Trajectory") : "")));
    if (!found.results.length) showMessage("Nobody was seen there in that time.", "info");
  });
});

$("clones-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const found = await api(`/clones?max_speed_kmh=${$("clones-speed").value}`);
    overlay.clearLayers();
    const list = $("analytics-results");
    list.replaceChildren(...found.cases.map((c) => {
      const [a, b] = c.sightings;
      const line = [[a.lat, a.lon], [b.lat, b.lon]];
      L.polyline(line, { color: "#d33", dashArray: "6 6" }).addTo(overlay);
      line.forEach((ll, i) => L.marker(ll, { icon: L.divIcon({ className: "stop-label", html: "AB"[i], iconSize: null }) }).addTo(overlay));
      return el("li", {}, el("div", {},
        el("strong", {}, c.plate),
        el("div", { class: "meta" }, `${c.speed_kmh === null ? "both at the same time" : `${Math.round(c.speed_kmh)} km/h implied`}`
          + ` over ${(c.distance_m / 1000).toFixed(1)} km · look ${c.appearance} · confidence ${Math.round(c.confidence * 100)}%`),
        el("div", { class: "side-by-side" },
          ...[a, b].map((s, i) => el("figure", {},
            el("img", { src: `/sightings/${s.sighting_id}/crop`, alt: `vehicle ${"AB"[i]} of ${c.plate}` }),
            el("figcaption", {}, `${"AB"[i]}: ${s.camera_id} · ${fmtTime(s.ts)}`))))));
    }));
    if (!found.cases.length) showMessage("No cloned plates found.", "info");
  });
});

$("cotravel-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const plate = $("cotravel-plate").value.trim().toUpperCase();
    const found = await api(`/co-travel/${encodeURIComponent(plate)}?window_s=${$("cotravel-window").value}`);
    overlay.clearLayers();
    const shared = [];
    found.companions.forEach((c, n) => c.shared.forEach((r) => {
      const cam = cameras.get(r.camera_id);
      if (!cam) return;
      shared.push([cam.lat, cam.lon]);
      L.circleMarker([cam.lat, cam.lon], { radius: 7 + 2 * n, color: "#7c3aed", fill: false, weight: 2 })
        .bindTooltip(`${c.plate} · ${cam.name} · lag ${Math.round(r.lag_s)} s`).addTo(overlay);
    }));
    if (shared.length) map.fitBounds(shared, { padding: [40, 40], maxZoom: 15 });
    const list = $("analytics-results");
    list.replaceChildren(...found.companions.map((c) => el("li", {},
      el("div", {}, el("strong", {}, c.plate), el("div", { class: "meta" }, `${c.cameras} shared cameras · lag ${Math.round(c.mean_lag_s)} s`)),
      el("button", { type: "button", class: "secondary", onclick: () => showTrajectory(c.plate) }, "Trajectory"))));
    if (!found.companions.length) showMessage(`Nobody travels with ${plate}.`, "info");
  });
});

/* ---------- alerts ---------- */
let unseen = 0;
function toast(alert) {
  const t = el("div", { class: `toast ${alert.severity}`, role: "status" },
    el("strong", {}, `${alert.severity.toUpperCase()}: ${alert.target}`), el("div", {}, `${alert.details.rule || ""} · ${alert.camera_id}`));
  $("toasts").append(t);
  setTimeout(() => t.remove(), 8000);
}

function alertItem(alert) {
  const ack = el("button", { type: "button", class: "secondary" }, alert.acked_by ? `acknowledged by ${alert.acked_by}` : "Acknowledge");
  if (alert.acked_by) ack.disabled = true;
  ack.addEventListener("click", () => guarded(async () => {
    const done = await api(`/alerts/${alert.id}/ack`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                        body: JSON.stringify({ user: me.name }) });
    ack.textContent = `acknowledged by ${done.acked_by}`;
    ack.disabled = true;
  }));
  return el("li", { "data-alert": alert.id },
    el("img", { src: `/sightings/${alert.sighting_id}/crop`, alt: `evidence of alert ${alert.target}` }),
    el("div", {}, el("strong", {}, `${alert.target}`), el("div", { class: "meta" },
      `${alert.severity} · ${alert.details.rule || alert.rule_id} · ${alert.camera_id} · ${fmtTime(alert.ts)}`)), ack);
}

async function loadAlerts() {
  const alerts = await api("/alerts?limit=50");
  $("alert-list").replaceChildren(...alerts.map(alertItem));
}

let stream = null;
function connectStream() {
  if (stream) stream.close();
  const source = new EventSource("/alerts/stream");  // same origin: the session cookie goes with it
  stream = source;
  source.onopen = () => { $("stream-state").textContent = "live"; document.body.dataset.stream = "open"; };
  source.onerror = () => {
    $("stream-state").textContent = "reconnecting…";
    if (source.readyState !== EventSource.CLOSED || stream !== source) return;  // the browser retries by itself
    // Refused (the session ended?): /auth/me shows the sign-in page if so, else try again shortly.
    stream = null;
    api("/auth/me").then(() => setTimeout(() => { if (!stream && me) connectStream(); }, 3000)).catch(() => {});
  };
  source.addEventListener("alert", (e) => {
    const alert = JSON.parse(e.data);
    $("alert-list").prepend(alertItem(alert));
    toast(alert);
    if (!location.hash.startsWith("#alerts")) {
      unseen += 1;
      $("alert-count").textContent = String(unseen);
      $("alert-count").hidden = false;
    }
  });
}

async function loadWatchlists() {
  if (!hasRole("investigator")) return;
  const lists = await api("/watchlists");
  $("entry-list").replaceChildren(...lists.filter((w) => w.kind === "plate").map((w) => el("option", { value: w.id }, w.name)));
  $("watchlists").replaceChildren(...lists.map((w) => el("li", {}, `${w.name} (${w.kind})`)));
}

$("watchlist-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const body = Object.fromEntries(new FormData(e.target).entries());
    await api("/watchlists", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    e.target.reset();
    await loadWatchlists();
    showMessage("Watchlist created.", "info");
  });
});

$("entry-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const form = Object.fromEntries(new FormData(e.target).entries());
    const entry = { value: form.value, match: form.match, reason: form.reason, created_by: form.created_by };
    await api(`/watchlists/${form.watchlist}/entries`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                         body: JSON.stringify(entry) });
    if ($("entry-rule").checked) {
      await api("/rules", { method: "POST", headers: { "Content-Type": "application/json" },
                            body: JSON.stringify({ name: `${form.value} (${form.reason})`, watchlist_id: form.watchlist, severity: "high" }) });
    }
    showMessage(`${form.value} is now watched.`, "info");
  });
});

/* ---------- navigation ---------- */
function route() {
  const view = (location.hash || "#map").slice(1).split("?")[0];
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === view);
  if (view === "alerts") { unseen = 0; $("alert-count").hidden = true; }
  showMessage("");
  setTimeout(() => map.invalidateSize(), 0);
}
window.addEventListener("hashchange", route);

/* ---------- case bar ---------- */
function noteCase(text, missing = false) {
  const note = $("case-note");
  note.textContent = text;
  note.classList.toggle("missing", missing);
  const { ref, reason } = currentCase();
  $("case-ref").setAttribute("aria-invalid", String(missing && (!ref || !CASE_REF.test(ref))));
  $("case-reason").setAttribute("aria-invalid", String(missing && !reason));
  if (missing) {
    const empty = !ref ? $("case-ref") : !reason ? $("case-reason") : null;
    if (empty && document.activeElement !== empty) empty.focus();
  }
}

function caseIdle() {
  if (!caseProblem()) noteCase("Searches are recorded under this case and reason.");
  else if (me && !hasRole("investigator")) noteCase(`As a ${me.role} you see the map and live alerts; searches need the investigator role.`);
  else noteCase("Searches need a case reference and a reason.");
}

for (const [id, key] of [["case-ref", CASE_KEY], ["case-reason", REASON_KEY]]) {
  $(id).value = sessionStorage.getItem(key) || "";
  $(id).addEventListener("input", (e) => {
    sessionStorage.setItem(key, e.target.value);
    const problem = caseProblem();
    if ($("case-note").classList.contains("missing") && problem) noteCase(problem, true);
    else caseIdle();
  });
}

/* ---------- signing in ---------- */
const ROLES = ["viewer", "investigator", "supervisor", "admin"];
let me = null;  // {name, role} of the signed-in user
let loaded = false;
const hasRole = (role) => !!me && ROLES.indexOf(me.role) >= ROLES.indexOf(role);

function showLogin(note = "", kind = "info") {
  if (stream) { stream.close(); stream = null; }
  document.body.dataset.auth = "out";
  const box = $("login-error");
  box.textContent = note;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !note;
  $("login-submit").disabled = false;
  $("login-token").focus();
}

async function signedIn(who) {
  if (me && me.name !== who.name) {  // someone else at this tab: start from a clean page
    for (const key of [CASE_KEY, REASON_KEY]) sessionStorage.removeItem(key);
    location.reload();
    return;
  }
  me = { name: who.name, role: who.role };
  document.body.dataset.auth = "in";
  document.body.dataset.role = me.role;
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  for (const node of document.querySelectorAll("[data-min-role]")) node.hidden = !hasRole(node.dataset.minRole);
  for (const id of ["wl-by", "entry-by"]) if (!$(id).value) $(id).defaultValue = me.name;  // a form reset keeps it
  caseIdle();
  route();
  if (!loaded) await loadApp();
  else if (!stream) connectStream();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const box = $("login-error");
  box.hidden = true;
  $("login-submit").disabled = true;
  try {
    const who = await api("/auth/login", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify({ token: $("login-token").value.trim() }) });
    $("login-token").value = "";
    await signedIn(who);
  } catch (err) {
    box.textContent = err.status === 401 ? "Sign-in failed: that token is not valid (or its user is disabled)."
      : err.status === 422 ? "Sign-in failed: paste the whole token." : `Sign-in failed: ${err.message || err}`;
    box.className = "";
    box.hidden = false;
    $("login-token").select();
  } finally {
    $("login-submit").disabled = false;
  }
});

$("sign-out").addEventListener("click", async () => {
  try { await api("/auth/logout", { method: "POST" }); } catch (_) { /* signed out either way */ }
  for (const key of [CASE_KEY, REASON_KEY]) sessionStorage.removeItem(key);
  history.replaceState(null, "", location.pathname);
  location.reload();  // a fresh page: nothing of this session's results stays on screen
});

async function loadApp() {
  setTimeout(() => map.invalidateSize(), 0);
  map.invalidateSize();  // the map was laid out while hidden behind the sign-in page
  await guarded(async () => {
    const linked = new URLSearchParams(location.hash.split("?")[1] || "").get("plate");  // #map?plate=... deep links
    const prefetched = linked ? trajectoryOf(linked) : null;  // fetched while the base layers load
    if (prefetched) prefetched.catch(() => {});  // reported where it is awaited
    await Promise.all([loadBase(), loadCameras(), loadAlerts(), loadWatchlists()]);
    connectStream();
    loaded = true;
    document.body.dataset.ready = "true";
    if (linked) await showTrajectory(linked, null, null, prefetched);
  });
}

(async () => {
  route();
  let who;
  try {
    who = await api("/auth/me");
  } catch (err) {
    if (!(err instanceof SignedOut)) showLogin(`The server did not answer: ${err.message || err}`, "error");
    return;
  }
  await signedIn(who);
})();
