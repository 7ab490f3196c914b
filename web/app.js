/* Sightline's browser app: map, trajectories, search, analytics and live alerts over the HTTP API. */
"use strict";

/* ---------- the one door to the API: session cookie, CSRF token, case headers ---------- */
// Every text shown comes from text.js: t(key, params) in the chosen language, tw(word) for the API's words.
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const CASE_KEY = "sightline-case", REASON_KEY = "sightline-reason";
// Routes the server binds to a case (services/api/security.py ROUTES, case=True): searches, trajectories,
// analytics, sightings listings and exports. The crop of one sighting (/sightings/{id}/crop) is not among them.
// The search form's vocabulary and the free-text parser read no sightings: they need no case.
const CASE_BOUND = /^\/(search\/(?!vocabulary|parse\?)|trajectories\/|stays\/|clones(\?|$)|co-travel\/|sightings(\/[^/?]+)?(\?|$)|watchlists\/[^/]+\/export)/;
// As the server checks a case number (services/cases.py CASE_REF): letters of any script, digits, spaces and
// . / : # _ - ( ) [ ] and their full-width forms, with at least one letter or digit. It goes out percent-encoded.
const CASE_REF = /^[\p{L}\p{N}\p{M}_./:#()[\]（）〔〕【】 -]{1,64}$/u;
const validRef = (ref) => CASE_REF.test(ref) && /[\p{L}\p{N}]/u.test(ref);

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
  if (!ref && !reason) return t("case.needBoth");
  if (!ref) return t("case.needRef");
  if (!reason) return t("case.needReason");
  if (!validRef(ref)) return t("case.badRef");
  return "";
}

/* The API's refusal as a sentence for the user: no status code, no header or route names. */
function errorText(status, detail) {
  const text = typeof detail === "string" ? detail : "";
  const role = /needs the (\w+) role/.exec(text);
  if (status === 403 && role) return t("err.role", { role: tw(role[1]) });
  if (/X-Case|X-Reason/.test(text)) {
    if (/must say which case/.test(text)) return t("case.needBoth");
    return t(/^X-Reason is/.test(text) ? "err.badReason" : "err.badCase");
  }
  const pattern = /^'(.*)' is not a plate pattern/.exec(text);
  if (pattern) return t("err.platePattern", { q: pattern[1] });
  if (status === 404) return t("err.notFound", { detail: text });
  if (status === 409 && /^case .* is closed/.test(text)) return t("err.caseClosed");
  if (status === 403 && /^case .* only its owner/.test(text)) return t("err.notOnCase");
  if (status === 413) return t("err.tooLarge");
  if (status === 429) return t("err.tooMany");
  if (status >= 500) return t("err.server");
  if (status === 422 && Array.isArray(detail)) {  // FastAPI's validation errors: which field, what is wrong
    const fields = detail.map((d) => (d.loc || []).filter((x) => x !== "body" && x !== "query").join(".")).filter(Boolean);
    return t("err.invalid", { fields: [...new Set(fields)].join(", ") || "?" });
  }
  if (!text) return t("err.status", { status });
  return t("err.said", { detail: text.charAt(0).toUpperCase() + text.slice(1).replace(/[.:]?$/, ".") });
}

const api = async (path, options = {}) => {
  const method = (options.method || "GET").toUpperCase();
  const headers = new Headers(options.headers || {});
  if (CASE_BOUND.test(path) && me && !hasRole("investigator")) {  // a viewer's search would only be refused
    const error = new Error(t("err.role", { role: tw("investigator") }));
    error.status = 403;
    throw error;
  }
  const problem = caseProblem();
  if (CASE_BOUND.test(path) && problem) {
    noteCase(problem, true);
    throw new CaseMissing(problem);
  }
  if (!problem) {
    const { ref, reason } = currentCase();
    headers.set("X-Case", encodeURIComponent(ref));  // any script, e.g. 沪公(2026)0412号: the server decodes UTF-8
    headers.set("X-Reason", encodeURIComponent(reason));
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
    const detail = body && body.detail !== undefined ? body.detail : text;
    if (response.status === 401 && path !== "/auth/login") {
      showLogin(me ? t("login.ended") : "");
      throw new SignedOut(t("login.ended"));
    }
    const error = new Error(errorText(response.status, detail));
    error.status = response.status;
    error.detail = detail;
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
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";  // the browser's zone: times are shown in it
const fmtTime = (iso) => new Date(iso).toLocaleString(LOCALE, { timeZoneName: "short" });
const toIso = (local) => (local ? new Date(local).toISOString() : null);

/* The one message box is shown beside the control whose action it answers (never at the foot of the panel). */
let messageAnchor = null;
const messageBox = document.getElementById("message");  // kept: a result list it sat in may be replaced

function showMessage(text, kind = "error", anchor = messageAnchor) {
  const box = messageBox;
  if (anchor && anchor.isConnected && !anchor.closest("[hidden]")) {
    const busy = anchor.nextElementSibling && anchor.nextElementSibling.classList.contains("busy") ? anchor.nextElementSibling : anchor;
    const row = busy.closest(".actions") || busy;
    if (row.nextElementSibling !== box) row.after(box);
  } else if (text && (!box.isConnected || box.closest("[hidden]"))) {
    const heading = document.querySelector(".view:not([hidden]) h2");  // no action to stand beside: the page's top
    if (heading) heading.after(box);
  }
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
  if (text) box.scrollIntoView({ block: "nearest" });
}

/* A search's results: their block moved right after the form that ran it (the form of the control the message
   answers), "N results" on top, and scrolled to the top of the panel with the message about them just above. */
function showOut(id, home, count) {
  const out = $(id);
  const form = messageAnchor && messageAnchor.closest("form");
  const after = form && form.closest(".view") === out.closest(".view") ? form : home;
  if (after && out.previousElementSibling !== after) after.after(out);
  out.querySelector(".result-count").textContent = count;
  out.hidden = false;
  const said = !messageBox.hidden && after && after.contains(messageBox);
  (said ? messageBox : out).scrollIntoView({ block: "start" });
}

/* A time range in words ("" when none was given). */
function rangeText(start, end) {
  if (start && end) return t("range.between", { from: fmtTime(start), to: fmtTime(end) });
  if (start) return t("range.from", { from: fmtTime(start) });
  return end ? t("range.until", { to: fmtTime(end) }) : "";
}

/* An empty result says what constrained the search: the time range and the cameras only when they were given,
   and then that they may have left the matches out. */
function emptyText(what, { start = null, end = null, cameras = 0 } = {}) {
  const timed = !!(start || end);
  const scope = [timed ? t("empty.range", { range: rangeText(start, end) }) : "", cameras ? t("empty.cameras", { n: cameras }) : ""];
  const hint = timed && cameras ? "empty.hintBoth" : timed ? "empty.hintRange" : cameras ? "empty.hintCameras" : "";
  return t("empty.sentence", { what, scope: scope.join("") }) + (hint ? ` ${t(hint)}` : "");
}

async function guarded(fn, anchor = null) {
  messageAnchor = anchor;
  showMessage("");
  try { await fn(); } catch (err) {
    if (err instanceof SignedOut) return;  // said on the sign-in page
    showMessage(err.message || String(err));
  }
}

/* An action that may take a while: its button is disabled, and past half a second a spinner and a Cancel
   button show beside it. `work` gets an AbortSignal; a cancelled action says so where it was started. */
async function runAction(button, work) {
  const controller = new AbortController();
  const busy = busyBox(button);
  const cancel = () => controller.abort();
  busy.querySelector("button").onclick = cancel;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  const timer = setTimeout(() => { busy.hidden = false; }, 500);
  try {
    await guarded(async () => {
      try { await work(controller.signal); } catch (err) {
        if (controller.signal.aborted) { showMessage(t("busy.cancelled"), "info"); return; }
        throw err;
      }
    }, button);
  } finally {
    clearTimeout(timer);
    busy.hidden = true;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function busyBox(button) {
  const next = button.nextElementSibling;
  if (next && next.classList.contains("busy")) return next;
  const box = el("span", { class: "busy", role: "status", hidden: "" }, el("span", { class: "spinner", "aria-hidden": "true" }),
                 ` ${t("busy.working")} `, el("button", { type: "button", class: "secondary inline cancel" }, t("busy.cancel")));
  button.after(box);
  return box;
}

/* A form's submit runs as an action of its submit button. */
function onSubmitAction(form, work) {
  $(form).addEventListener("submit", (e) => {
    e.preventDefault();
    const button = e.submitter || e.target.querySelector("button[type=submit]");
    runAction(button, (signal) => work(signal, e.target));
  });
}

/* ---------- map ---------- */
// Leaflet puts a string tooltip in as HTML: data goes in as text, made when the tooltip first opens.
const asText = (text) => () => el("span", {}, text);
const map = L.map("map", { preferCanvas: true, zoomControl: true }).setView([31.25, 121.3], 12);
const cameraLayer = L.layerGroup().addTo(map);
// What a page draws stays with that page: only the shown page's layer is on the map.
const trajectoryLayer = L.layerGroup();
const analyticsLayer = L.layerGroup(), areaLayer = L.layerGroup();
const searchLayer = L.layerGroup(), heatHolder = L.layerGroup();
const viewLayers = { map: L.layerGroup([trajectoryLayer]), search: L.layerGroup([searchLayer, heatHolder]), analytics: L.layerGroup([analyticsLayer, areaLayer]),
                     alerts: L.layerGroup() };
const cameras = new Map();

function showViewLayer(view) {
  for (const [name, layer] of Object.entries(viewLayers)) {
    if (name === view) layer.addTo(map); else layer.remove();
  }
  if (view !== "map") stopReplay();
}

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
      .bindTooltip(asText(`${c.name} (${c.id})`)).on("click", (e) => cameraClicked(c, e)).addTo(cameraLayer);
    bounds.push([c.lat, c.lon]);
  }
  if (bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
  document.body.dataset.cameras = String(list.length);
}

/* ---------- a camera's recent sightings (a click on it) ---------- */
const CAMERA_RECENT = 10;

function cameraClicked(camera, event) {
  if (drawing && location.hash.startsWith("#analytics")) return;  // while drawing an area a click is one of its points
  const body = el("div", { class: "camera-popup", "data-camera": camera.id }, el("strong", {}, camera.name),
                  el("div", { class: "meta" }, `${camera.id}${camera.road ? ` · ${camera.road}` : ""}`),
                  el("div", { class: "meta state" }, t("camera.loading")));
  L.popup({ maxWidth: 280, minWidth: 200 }).setLatLng(event.latlng).setContent(body).openOn(map);
  recentSightings(camera, body);
}

async function recentSightings(camera, body) {
  const state = body.querySelector(".state");
  if (!hasRole("investigator")) {  // a viewer sees the camera, not what it saw
    state.textContent = t("camera.viewer");
    body.dataset.loaded = "true";
    return;
  }
  try {
    const found = await api(`/sightings?camera_id=${encodeURIComponent(camera.id)}&limit=${CAMERA_RECENT}`);
    const list = el("ol", { class: "results compact" }, ...found.sightings.map((s) => el("li", { "data-sighting": s.id },
      el("img", { src: `/sightings/${s.id}/crop`, alt: t("crop.alt", { kind: tw(s.kind), id: s.id }), loading: "lazy" }),
      el("div", {}, sightingLabel(s), el("div", { class: "meta" }, fmtTime(s.ts))))));
    state.textContent = found.sightings.length ? t("camera.latest", { n: found.sightings.length }) : t("camera.none");
    body.append(list);
  } catch (err) {
    state.textContent = err.message || String(err);
    state.classList.add("inline-error");
  }
  body.dataset.loaded = "true";
}

function sightingLabel(s) {
  const a = s.attributes || {};
  if (a.plate) return a.plate;
  const parts = s.kind === "person" ? [tw(a.gender), a.upper_color && t("label.top", { color: tw(a.upper_color) }),
                                       a.lower_color && t("label.bottom", { color: tw(a.lower_color) }),
                                       a.backpack && tw("backpack"), a.bag && tw("bag"), a.hat && tw("hat")]
    : [tw(a.vehicle_color), tw(a.vehicle_type)];
  return [tw(s.kind), ...parts.filter(Boolean)].join(" · ");
}

/* Sightings plotted at their cameras (numbered as in the list), on the given page's layer. */
function plotSightings(layer, sightings, color = "#0f766e") {
  layer.clearLayers();
  const points = [];
  sightings.forEach((s, i) => {
    const cam = cameras.get(s.camera_id);
    if (!cam) return;
    points.push([cam.lat, cam.lon]);
    L.circleMarker([cam.lat, cam.lon], { radius: 8, color, weight: 2, fillOpacity: 0.25 })
      .bindTooltip(asText(`${i + 1}. ${sightingLabel(s)} · ${cam.name} · ${fmtTime(s.ts)}`)).addTo(layer);
  });
  if (points.length) map.fitBounds(points, { padding: [40, 40], maxZoom: 15 });
  return points.length;
}

/* ---------- trajectory ---------- */
let replayPoints = [];
let replayMarker = null;
let replayTimer = null;

function sightingItem(s, index) {
  const cam = cameras.get(s.camera_id);
  const item = el("li", { "data-sighting": s.id },
    index !== undefined ? el("span", { class: "num" }, index + 1) : "",
    el("img", { src: `/sightings/${s.id}/crop`, alt: t("crop.alt", { kind: tw(s.kind), id: s.id }), loading: "lazy" }),
    el("div", {},
      el("div", {}, (s.attributes && s.attributes.plate) || tw(s.kind), s.score !== undefined ? ` · ${t("result.score", { score: Number(s.score).toFixed(3) })}` : ""),
      el("div", { class: "meta" }, `${cam ? cam.name : s.camera_id} · ${fmtTime(s.ts)}`)));
  const plate = s.attributes && s.attributes.plate;
  const actions = el("div", { class: "actions" });
  if (plate) {
    actions.append(el("button", { type: "button", class: "secondary", onclick: (e) => guarded(() => showTrajectory(plate), e.currentTarget) }, t("result.trajectory")));
  }
  const query = s.query || lastQuery;
  actions.append(el("button", { type: "button", class: "secondary add-to-case", onclick: (e) => addToCase(
    { kind: "sighting", sighting_ids: [s.id], query: query || null }, e.currentTarget) }, t("result.addToCase")));
  item.append(actions);
  return item;
}

async function trajectoryOf(plate, start, end, signal) {
  const params = new URLSearchParams();
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  return api(`/trajectories/${encodeURIComponent(plate)}?${params}`, { signal });
}

let shownTrajectory = null;  // {plate, start, end} of the trajectory on the map

function clearTrajectory() {
  stopReplay();
  trajectoryLayer.clearLayers();
  replayMarker = null;
  replayPoints = [];
  $("trajectory-list").replaceChildren();
  $("trajectory-out").hidden = true;
  $("replay").hidden = true;
  $("replay-slider").max = "0";
  $("replay-slider").value = "0";
  $("replay-time").textContent = "";
  delete document.body.dataset.trajectory;
}

async function showTrajectory(plate, start, end, prefetched, signal) {
  if (!location.hash.startsWith("#map")) location.hash = "#map";
  shownTrajectory = { plate, start: start || null, end: end || null };
  lastQuery = t("query.trajectory", { plate, range: rangeText(start, end) });
  $("traj-plate").value = plate;
  clearTrajectory();  // a new search starts from an empty map: nothing stale stays if it fails
  const traj = await (prefetched || trajectoryOf(plate, start, end, signal));
  const points = traj.points;
  if (!points.length) {
    showMessage(emptyText(t("empty.trajectory", { plate }), { start, end }), "info");
    showOut("trajectory-out", $("trajectory-form"), t("count.sightings", { n: 0 }));
    document.body.dataset.trajectory = "0";
    return;
  }
  drawTrips(traj);
  drawStops(points);
  drawLegs(traj);
  for (const stay of traj.stays || []) {
    L.marker([stay.lat, stay.lon], { icon: L.divIcon({ className: "stay-label", html: t("traj.stay"), iconSize: null }) })
      .bindPopup(asText(t("traj.stayPopup", { visits: stay.visits, minutes: Math.round(stay.dwell_s / 60) }))).addTo(trajectoryLayer);
  }
  listStops(plate, traj, 0);
  map.fitBounds(points.map((p) => [p.lat, p.lon]), { padding: [40, 40], maxZoom: 15 });
  replayPoints = points;
  const slider = $("replay-slider");
  slider.max = String(points.length - 1);
  slider.value = "0";
  $("replay").hidden = false;
  replayTo(0, false);  // the list starts at its top anyway: no layout forced before the first paint
  const trips = traj.trips && traj.trips.length ? traj.trips.length : 1;
  showOut("trajectory-out", $("trajectory-form"), t("count.trajectory", { n: points.length, trips }));
  document.body.dataset.trajectory = String(points.length);
}

/* Index of the first point of every trip after the first: the leg into it is a gap, not a drive. */
function tripStarts(traj) {
  return new Set((traj.trips || []).slice(1).map((trip) => trip[0]));
}

function drawTrips(traj) {
  const trips = traj.trips && traj.trips.length ? traj.trips : [traj.points.map((_, i) => i)];
  trips.forEach((trip, n) => {
    L.polyline(trip.map((i) => [traj.points[i].lat, traj.points[i].lon]), { color: n % 2 ? "#b91c1c" : "#d33", weight: 3 })
      .bindTooltip(asText(t("traj.trip", { n: n + 1, of: trips.length })), { sticky: true }).addTo(trajectoryLayer);
  });
  document.body.dataset.trips = String(trips.length);
}

/* Every stop is numbered; past 100 stops only every k-th number is a DOM label (they would overlap anyway),
   the others are canvas circles that show their number on hover. A camera passed again shows all its visits. */
function drawStops(points) {
  const every = Math.ceil(points.length / 100);
  const visits = new Map();
  points.forEach((p, i) => visits.set(p.camera_id, [...(visits.get(p.camera_id) || []), i + 1]));
  points.forEach((p, i) => {
    const again = visits.get(p.camera_id);
    const popup = () => el("div", {}, el("strong", {}, `${i + 1}. ${p.camera_name || p.camera_id}`), el("div", {}, fmtTime(p.ts)),
                           again.length > 1 ? el("div", { class: "meta" }, t("traj.passes", { list: again.join(", ") })) : "");  // made on opening
    const labelled = (i % every === 0 || i === points.length - 1) && again[0] === i + 1;  // one label per camera
    const text = again.length > 1 ? `${again.slice(0, 3).join(",")}${again.length > 3 ? "…" : ""}` : String(i + 1);
    (labelled ? L.marker([p.lat, p.lon], { icon: L.divIcon({ className: "stop-label", html: text, iconSize: null }) })
      : L.circleMarker([p.lat, p.lon], { radius: 5, color: "#2563a8", fillOpacity: 1 }).bindTooltip(String(i + 1)))
      .bindPopup(popup).on("click", () => replayTo(i)).addTo(trajectoryLayer);
  });
}

/* Speeds: permanent labels while they stay readable, else on hover (a canvas path per leg, no DOM per label).
   The leg into a new trip is the time between trips, not a drive: it gets no speed. */
function drawLegs(traj) {
  const gaps = tripStarts(traj);
  const legs = (traj.legs || []).filter((leg, i) => !gaps.has(i + 1) && leg.speed_kmh !== null && leg.speed_kmh !== undefined);
  const labelled = legs.length <= 60;
  for (const leg of legs) {
    const text = `${Math.round(leg.speed_kmh)} km/h`;
    const segment = L.polyline([[leg.from.lat, leg.from.lon], [leg.to.lat, leg.to.lon]], { opacity: 0, weight: 10 })
      .bindTooltip(text, { sticky: true }).addTo(trajectoryLayer);
    if (labelled) {
      const mid = [(leg.from.lat + leg.to.lat) / 2, (leg.from.lon + leg.to.lon) / 2];
      L.marker(mid, { icon: L.divIcon({ className: "leg-speed", html: text, iconSize: null }), interactive: false }).addTo(trajectoryLayer);
    }
    segment.bringToBack();
  }
}

const LIST_PAGE = 100;  // the sightings list grows a page at a time: a long trajectory paints at once

function listStops(plate, traj, from) {
  const list = $("trajectory-list");
  const more = list.querySelector("li.more");
  if (more) more.remove();
  const gaps = tripStarts(traj);
  const items = document.createDocumentFragment();
  traj.points.slice(from, from + LIST_PAGE).forEach((p, k) => {
    const i = from + k;
    const leg = i > 0 ? traj.legs[i - 1] : null;
    const item = sightingItem({ id: p.sighting_id, kind: "vehicle", camera_id: p.camera_id, ts: p.ts,
                                attributes: { plate } }, i);
    if (gaps.has(i)) item.prepend(el("div", { class: "trip-gap" }, t("traj.newTrip", { gap: gapText(leg ? leg.seconds : 0) })));
    item.dataset.stop = String(i);
    if (leg && !gaps.has(i) && leg.speed_kmh !== null) item.querySelector(".meta").append(` · ${t("traj.speedFrom", { speed: Math.round(leg.speed_kmh), from: i })}`);
    items.append(item);
  });
  if (from + LIST_PAGE < traj.points.length) {
    items.append(el("li", { class: "more" }, el("button", { type: "button", class: "secondary",
      onclick: () => listStops(plate, traj, from + LIST_PAGE) }, t("traj.more", { n: Math.min(LIST_PAGE, traj.points.length - from - LIST_PAGE) }))));
  }
  list.append(items);
}

function gapText(seconds) {
  const hours = seconds / 3600;
  return hours >= 1 ? t("unit.hours", { n: hours.toFixed(1) }) : t("unit.minutes", { n: Math.round(seconds / 60) });
}

function replayTo(i, follow = true) {
  const p = replayPoints[i];
  if (!p) return;
  if (replayMarker) trajectoryLayer.removeLayer(replayMarker);
  replayMarker = L.circleMarker([p.lat, p.lon], { radius: 9, color: "#f5a623", weight: 3 }).addTo(trajectoryLayer);
  $("replay-slider").value = String(i);
  $("replay-time").textContent = `${i + 1}/${replayPoints.length} · ${p.camera_name || p.camera_id} · ${fmtTime(p.ts)}`;
  for (const row of document.querySelectorAll("#trajectory-list li.current")) row.classList.remove("current");
  const row = document.querySelector(`#trajectory-list li[data-stop="${i}"]`);
  if (row) row.classList.add("current");
  if (row && follow) row.scrollIntoView({ block: "nearest" });
  document.body.dataset.replay = String(i);
}

const REPLAY_STEP_MS = 700;

function startReplay() {
  if (!replayPoints.length) return;
  if (Number($("replay-slider").value) >= replayPoints.length - 1) replayTo(0);
  $("replay-play").textContent = t("traj.pause");
  $("replay-play").setAttribute("aria-pressed", "true");
  replayTimer = setInterval(() => {
    const next = Number($("replay-slider").value) + 1;
    if (next >= replayPoints.length) { stopReplay(); return; }
    replayTo(next);
  }, REPLAY_STEP_MS);
}

function stopReplay() {
  clearInterval(replayTimer);
  replayTimer = null;
  $("replay-play").textContent = t("traj.play");
  $("replay-play").setAttribute("aria-pressed", "false");
}

$("replay-play").addEventListener("click", () => (replayTimer ? stopReplay() : startReplay()));
$("replay-slider").addEventListener("input", (e) => { stopReplay(); replayTo(Number(e.target.value)); });
$("traj-add").addEventListener("click", (e) => {
  if (shownTrajectory) addToCase({ kind: "trajectory", ...shownTrajectory }, e.currentTarget);
});

onSubmitAction("trajectory-form", async (signal) => {
  const plate = $("traj-plate").value.trim().toUpperCase();
  await showTrajectory(plate, toIso($("traj-start").value), toIso($("traj-end").value), null, signal);
});

/* No search is sent while the user types: every query is audited as the user's act, so only a submit (or a
   button) sends one. (Plate suggestions while typing logged searches the user never ran.) */

/* ---------- search ---------- */
const JSON_POST = { method: "POST", headers: { "Content-Type": "application/json" } };
// Photo search, vehicles: a result whose crop shares at least this many local features with the query under one
// homography is taken as the same vehicle. Two photos of one car share tens of such matches, look-alikes a handful
// (models/rerank.py; the verifier caps the count at 60).
const SAME_VEHICLE_INLIERS = 20;

/* The attribute form's words come from the server (GET /search/vocabulary): one vocabulary for form and parser. */
const FALLBACK_VOCABULARY = { vehicle_colors: ["white", "silver", "gray", "black", "red", "blue", "green", "yellow", "brown", "orange"],
  person_colors: ["white", "gray", "black", "red", "blue", "green", "yellow", "brown", "orange", "purple", "pink"],
  vehicle_types: ["car", "van", "truck", "bus", "motorcycle", "tricycle", "bicycle"], genders: ["male", "female"],
  default_near: { white: ["silver"], silver: ["gray", "white"], gray: ["silver"] } };
let vocabulary = FALLBACK_VOCABULARY;

async function loadVocabulary() {
  let words = FALLBACK_VOCABULARY;
  if (hasRole("investigator")) {
    try { words = await api("/search/vocabulary"); } catch (_) { /* the form still works with the built-in words */ }
  }
  vocabulary = words;
  for (const select of document.querySelectorAll("select[data-vocabulary]")) {
    select.replaceChildren(el("option", { value: "" }, t("form.any")), ...(words[select.dataset.vocabulary] || []).map((w) => el("option", { value: w }, tw(w))));
  }
  document.body.dataset.vocabulary = "loaded";
}

function fillCameraSelect() {
  fillCameraOptions($("attr-cameras"));
}

function fillCameraOptions(select) {
  if (select.options.length === cameras.size) return;
  const chosen = new Set([...select.selectedOptions].map((o) => o.value));
  const byName = new Intl.Collator().compare;
  select.replaceChildren(...[...cameras.values()].sort((a, b) => byName(a.name, b.name))
    .map((c) => el("option", chosen.has(c.id) ? { value: c.id, selected: "" } : { value: c.id }, `${c.name} (${c.id})`)));
}

function showKindFields() {
  const kind = $("attr-kind").value;
  for (const field of document.querySelectorAll("#attr-search-form [data-kind]")) field.hidden = field.dataset.kind !== kind;
}
$("attr-kind").addEventListener("change", showKindFields);
showKindFields();

function showConfidence() {
  const value = Number($("attr-confidence").value);
  $("attr-confidence-value").textContent = value > 0 ? `${Math.round(value * 100)}%` : t("form.any");
}
$("attr-confidence").addEventListener("input", showConfidence);

function resetAttributeForm() {
  $("attr-search-form").reset();
  for (const option of $("attr-cameras").options) option.selected = false;
  showKindFields();
  showConfidence();
}
$("attr-reset").addEventListener("click", resetAttributeForm);

/* Time range and cameras of the form: shared by attribute, plate and activity searches. */
function formScope() {
  const scope = {};
  const start = toIso($("attr-start").value), end = toIso($("attr-end").value);
  if (start) scope.start = start;
  if (end) scope.end = end;
  const ids = [...$("attr-cameras").selectedOptions].map((o) => o.value);
  if (ids.length) scope.camera_ids = ids;
  return scope;
}

/* The body of POST /search/attributes from the form: only the fields of the chosen kind, only those set. */
function attributeBody() {
  const kind = $("attr-kind").value;
  const body = { kind, ...formScope() };
  for (const field of document.querySelectorAll(`#attr-search-form [data-kind="${kind}"] select`)) {
    if (!field.value) continue;
    body[field.name] = field.hasAttribute("data-flag") ? field.value === "true" : field.value;
  }
  const confidence = Number($("attr-confidence").value);
  if (confidence > 0) body.min_confidence = confidence;
  if ($("attr-near").checked) body.near_colors = true;
  if ($("attr-exact").checked) body.exact_colors = true;
  return body;
}

/* A new search starts from an empty list and map: nothing stale stays on screen if it fails. */
function clearSearchResults() {
  $("search-results").replaceChildren();
  $("photo-query").hidden = true;
  $("search-out").hidden = true;
  searchLayer.clearLayers();
  delete document.body.dataset.results;
}

/* The results listed and plotted, "N results" on top, brought into view with `message` (if any) just above. */
function showResults(sightings, message, itemOf = (s) => sightingItem(s)) {
  const list = $("search-results");
  list.replaceChildren(...sightings.map(itemOf));
  plotSightings(searchLayer, sightings);
  if (message) showMessage(message, "info");
  showOut("search-out", null, t("count.results", { n: sightings.length }));
  document.body.dataset.results = String(sightings.length);
}

/* What the form's time range and cameras were, for the message of an empty result. */
const scopeOf = (scope) => ({ start: scope.start, end: scope.end, cameras: (scope.camera_ids || []).length });

function plateSightings(found) {
  return found.results.flatMap((r) => r.sightings.map((s) => ({ ...s, score: r.score })));
}

/* A plate search; a wildcard typed in exact mode is searched as a wildcard (and says so); an exact search that
   finds nothing offers the fuzzy one. `keep` narrows the sightings (free text: colour and type). */
async function plateSearch(q, mode, signal, { keep = null, note = "" } = {}) {
  clearSearchResults();
  const switched = mode === "exact" && /[?*]/.test(q);
  const used = switched ? "wildcard" : mode;
  if (switched) $("plate-mode").value = "wildcard";
  const params = new URLSearchParams({ q, mode: used });
  const scope = formScope();
  if (scope.start) params.set("start", scope.start);
  if (scope.end) params.set("end", scope.end);
  for (const id of scope.camera_ids || []) params.append("camera_id", id);
  searched(t("query.plate", { q, mode: tw(used) }) + note);
  const found = await api(`/search/plates?${params}`, { signal });
  const all = plateSightings(found);
  const sightings = keep ? all.filter(keep) : all;
  const notes = [];
  if (switched) notes.push(t("plate.switched", { q }));
  if (!sightings.length) notes.push(emptyText(t("empty.plate", { q, mode: tw(used) }), scopeOf(scope)));
  if (all.length > sightings.length) notes.push(t("plate.narrowed", { n: all.length - sightings.length }));
  showResults(sightings, notes.join(" "));
  if (!sightings.length && used === "exact") offerFuzzy(q);
}

function offerFuzzy(q) {
  const box = messageBox;
  box.append(" ", el("button", { type: "button", id: "try-fuzzy", class: "secondary inline", onclick: () => {
    $("plate-q").value = q;
    $("plate-mode").value = "fuzzy";
    const submit = $("plate-search-form").querySelector("button[type=submit]");
    runAction(submit, (signal) => plateSearch(q, "fuzzy", signal));
  } }, t("plate.tryFuzzy")));
}

onSubmitAction("plate-search-form", (signal) => plateSearch($("plate-q").value.trim(), $("plate-mode").value, signal));

async function attributeSearch(signal, note = "") {
  clearSearchResults();
  const body = attributeBody();
  searched(t("query.attributes", { body: JSON.stringify(body) }) + note);
  const found = await api("/search/attributes", { ...JSON_POST, body: JSON.stringify(body), signal });
  showResults(found.sightings, found.sightings.length ? "" : emptyText(t("empty.attributes"), scopeOf(body)), (s) => attributeItem(s));
}

function attributeItem(s) {
  const item = sightingItem(s);
  item.querySelector("div > div").replaceChildren(sightingLabel(s));
  return item;
}

onSubmitAction("attr-search-form", (signal) => attributeSearch(signal));

/* ---------- free text: read into chips, the chips fill the forms, Search runs them ---------- */
let parsed = null;  // the last /search/parse answer, with chips the user removed taken out

const chipLabel = (field) => t(`chip.${field}`, {}, field);  // the field's name; the API's own if there is no text
const FLAG_TEXT = { long_sleeves: ["attr.sleevesShort", "attr.sleevesLong"], long_pants: ["attr.pantsShort", "attr.pantsLong"] };
const FORM_FIELD = { vehicle_type: "attr-type", vehicle_color: "attr-color", gender: "attr-gender", upper_color: "attr-upper",
                     lower_color: "attr-lower", bag: "attr-bag", backpack: "attr-backpack", hat: "attr-hat",
                     long_sleeves: "attr-sleeves", long_pants: "attr-pants", plate_color: "attr-plate-color" };

function chipText(chip) {
  const v = chip.value;
  if (chip.field === "plate") return `${v.q} (${tw(v.mode)})`;
  if (chip.field === "time") return `${v.start ? fmtTime(v.start) : "…"} – ${v.end ? fmtTime(v.end) : "…"}`;
  if (chip.field === "place") return chip.applied ? t("chip.placeCameras", { text: v.text, n: v.camera_ids.length }) : t("chip.placeNone", { text: v.text });
  if (FLAG_TEXT[chip.field]) return t(FLAG_TEXT[chip.field][Number(v)]);
  if (typeof v === "boolean") return t(v ? "form.with" : "form.without");
  return tw(String(v));
}

function renderChips() {
  const box = $("freetext-chips");
  box.replaceChildren(...parsed.chips.map((chip, i) => el("span", { class: `chip${chip.applied ? "" : " not-applied"}`,
      "data-field": chip.field, title: t("chip.from", { text: chip.text }) },
    el("span", {}, `${chipLabel(chip.field)}: ${chipText(chip)}`),
    el("button", { type: "button", class: "chip-remove", "aria-label": t("chip.remove", { field: chipLabel(chip.field) }),
                   onclick: () => removeChip(i) }, "×"))));
  if (!parsed.chips.length) box.append(el("span", { class: "meta" }, t("chip.nothing")));
  const ignored = $("freetext-ignored");
  ignored.textContent = parsed.ignored.length ? t("chip.ignored", { words: parsed.ignored.join(" ") }) : "";
  ignored.hidden = !parsed.ignored.length;
}

function removeChip(i) {
  parsed.chips.splice(i, 1);
  renderChips();
  fillFormsFromChips();
}

const localInput = (iso) => {  // an ISO time as a datetime-local value in the browser's zone
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};

/* The chips (as they stand after removals) fill the plate and attribute forms, where the user can adjust them. */
function fillFormsFromChips() {
  resetAttributeForm();
  $("attr-kind").value = parsed.kind === "person" ? "person" : "vehicle";
  showKindFields();
  for (const chip of parsed.chips.filter((c) => c.applied)) {
    if (chip.field === "plate") { $("plate-q").value = chip.value.q; $("plate-mode").value = chip.value.mode; }
    else if (chip.field === "time") {
      if (chip.value.start) $("attr-start").value = localInput(chip.value.start);
      if (chip.value.end) $("attr-end").value = localInput(chip.value.end);
    } else if (chip.field === "place") {
      const ids = new Set(chip.value.camera_ids);
      for (const option of $("attr-cameras").options) option.selected = ids.has(option.value);
    } else if (FORM_FIELD[chip.field]) $(FORM_FIELD[chip.field]).value = String(chip.value);
  }
}

async function readFreeText(signal) {
  const q = $("freetext-q").value.trim();
  const params = new URLSearchParams({ q, tz: ZONE });
  parsed = await api(`/search/parse?${params}`, { signal });
  fillCameraSelect();
  renderChips();
  fillFormsFromChips();
  document.body.dataset.parsed = String(parsed.chips.length);
}

onSubmitAction("freetext-form", (signal) => readFreeText(signal));

/* Search: a plate chip runs the plate search (colour and type chips then narrow its sightings); else the attributes. */
async function runFreeText(signal) {
  if (!parsed || parsed.text !== $("freetext-q").value.trim()) await readFreeText(signal);  // typed on since it was read
  if (!parsed.chips.some((c) => c.applied)) throw new Error(t("free.nothing"));
  const note = t("query.fromText", { text: parsed.text });
  if (!parsed.chips.some((c) => c.applied && c.field === "plate")) { await attributeSearch(signal, note); return; }
  const colour = $("attr-color").value, type = $("attr-type").value;
  // As the attribute search does: white, silver and gray match each other unless "exactly this colour" is ticked.
  const colours = colour ? [colour, ...($("attr-exact").checked ? [] : (vocabulary.default_near || {})[colour] || [])] : [];
  const keep = colour || type ? (s) => (!colour || colours.includes(s.attributes.vehicle_color)) && (!type || s.attributes.vehicle_type === type) : null;
  await plateSearch($("plate-q").value.trim(), $("plate-mode").value, signal, { keep, note });
}

$("freetext-run").addEventListener("click", (e) => runAction(e.currentTarget, (signal) => runFreeText(signal)));
$("freetext-q").addEventListener("input", (e) => { $("freetext-run").disabled = !e.target.value.trim(); });

/* ---------- photo search: the query beside the results, its objects to pick from, each score explained ---------- */
let lastPhoto = null;  // {file, kind, url} of the photo searched

async function searchByImage(file, kind, pick, signal) {
  clearSearchResults();
  const form = new FormData();
  form.append("file", file);
  form.append("kind", kind);
  if (pick !== undefined && pick !== null) form.append("pick", String(pick));
  if (!lastPhoto || lastPhoto.file !== file) {
    if (lastPhoto) URL.revokeObjectURL(lastPhoto.url);
    lastPhoto = { file, kind, url: URL.createObjectURL(file) };
  }
  lastPhoto.kind = kind;
  searched(t("query.photo", { kind: tw(kind), name: file.name || t("photo.dropped") }) + (pick ? t("query.object", { n: pick + 1 }) : ""));
  const found = await api("/search/image", { method: "POST", body: form, signal });
  await showQueryPhoto(found, pick || 0);
  showPhotoResults(found, kind);
}

async function showQueryPhoto(found, picked) {
  const img = $("photo-img");
  img.src = lastPhoto.url;
  $("photo-query").hidden = false;
  try { await img.decode(); } catch (_) { /* a format the browser cannot show: the boxes are skipped */ }
  const w = img.naturalWidth, h = img.naturalHeight;
  const boxes = w && h ? found.objects.map((o) => objectBox(o, o.index === picked, w, h)) : [];
  $("photo-wrap").replaceChildren(img, ...boxes);
  $("photo-hint").textContent = found.objects.length > 1 ? t("photo.objects", { n: found.objects.length, kind: tw(lastPhoto.kind) })
    : found.objects.length ? "" : t("photo.noObject", { kind: tw(lastPhoto.kind) });
  const p = found.probe;
  $("photo-probe").textContent = t("photo.probe", { what: [tw(p.kind), tw(p.vehicle_color), tw(p.vehicle_type),
                                                            p.plate && t("photo.probePlate", { plate: p.plate })].filter(Boolean).join(" · ") });
}

function objectBox(o, picked, w, h) {
  const [x1, y1, x2, y2] = o.bbox;
  const pct = (v, total) => `${(100 * v / total).toFixed(2)}%`;
  const box = el("button", { type: "button", class: `object-box${picked ? " picked" : ""}`, "data-index": String(o.index),
                             "aria-pressed": String(picked), "aria-label": t("photo.pick", { label: tw(o.label), n: o.index + 1, score: Math.round(o.score * 100) }),
                             onclick: () => repick(o.index) }, String(o.index + 1));
  Object.assign(box.style, { left: pct(x1, w), top: pct(y1, h), width: pct(x2 - x1, w), height: pct(y2 - y1, h) });
  return box;
}

function repick(index) {
  if (!lastPhoto) return;
  const submit = $("image-search-form").querySelector("button[type=submit]");
  const { file, kind } = lastPhoto;
  runAction(submit, (signal) => searchByImage(file, kind, index, signal));
}

function showPhotoResults(found, kind) {
  const hits = found.results.map((r) => ({ ...r.sighting, score: r.score, why: r.why }));
  showResults(hits, hits.length ? "" : t("empty.photo"), (s) => photoItem(s));
  const list = $("search-results");
  if (!hits.length) return;
  if (kind !== "vehicle") {
    list.prepend(el("li", { class: "cutoff" }, t("photo.people")));
    return;
  }
  const same = hits.filter(isSameVehicle).length;
  const line = el("li", { class: "cutoff", "data-same": String(same) },
    same ? t("photo.same", { n: same, min: SAME_VEHICLE_INLIERS }) : t("photo.noSame", { min: SAME_VEHICLE_INLIERS }));
  const first = list.children[same];
  if (first) list.insertBefore(line, first); else list.append(line);
  document.body.dataset.sameVehicle = String(same);
}

const isSameVehicle = (s) => (s.why && s.why.local_inliers || 0) >= SAME_VEHICLE_INLIERS;

const WHY_TERMS = ["colour", "type", "plate", "local"];

function whyText(why) {
  const parts = [`${t("why.appearance")} ${Number(why.appearance || 0).toFixed(3)}`];
  for (const key of WHY_TERMS) {
    if (why[key] === undefined) continue;
    const v = Number(why[key]);
    parts.push(`${t(`why.${key}`)} ${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(3)}${key === "local" ? ` ${t("why.matched", { n: why.local_inliers })}` : ""}`);
  }
  return parts.join(" · ");
}

function photoItem(s) {
  const item = sightingItem(s);
  item.classList.add(isSameVehicle(s) ? "same-vehicle" : "look-alike");
  item.querySelector("div").append(el("div", { class: "why meta" }, `${t("result.score", { score: Number(s.score).toFixed(3) })} = ${whyText(s.why || {})}`));
  return item;
}

onSubmitAction("image-search-form", async (signal) => {
  const file = $("image-file").files[0];
  if (!file) throw new Error(t("photo.choose"));
  await searchByImage(file, $("image-kind").value, null, signal);
});

const drop = $("drop-zone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  const submit = $("image-search-form").querySelector("button[type=submit]");
  if (file) runAction(submit, (signal) => searchByImage(file, $("image-kind").value, null, signal));
});
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("image-file").click(); });

onSubmitAction("face-search-form", async (signal) => {
  const file = $("face-file").files[0];
  if (!file) throw new Error(t("face.choose"));
  clearSearchResults();
  const form = new FormData();
  form.append("file", file);
  searched(t("query.face", { name: file.name || t("photo.dropped") }));
  const found = await api("/search/face", { method: "POST", body: form, signal });
  showResults(found.results.map((r) => ({ ...r.sighting, score: r.score })), found.results.length ? "" : t("empty.face"));
});

/* ---------- activity: sightings per hour (brush to set the time range) and a heatmap ---------- */
const ACTIVITY_LIMIT = 1000;
const HOUR_MS = 3_600_000;
let activity = null;  // {start (ms, hour-aligned), counts per hour, brush: [i, j] | null}

onSubmitActionButton("activity-load", async (signal) => {
  const body = { ...attributeBody(), limit: ACTIVITY_LIMIT };
  const found = await api("/search/attributes", { ...JSON_POST, body: JSON.stringify(body), signal });
  activity = hourlyCounts(found.sightings);
  drawActivity();
  drawHeat(found.sightings);
  $("activity-range").textContent = found.sightings.length
    ? t(found.sightings.length === ACTIVITY_LIMIT ? "activity.latest" : "activity.shown",
        { n: found.sightings.length, from: fmtTime(new Date(activity.start).toISOString()) })
    : emptyText(t("activity.none"), scopeOf(body));
  document.body.dataset.activity = String(found.sightings.length);
});

function onSubmitActionButton(id, work) {
  $(id).addEventListener("click", (e) => runAction(e.currentTarget, work));
}

function hourlyCounts(sightings) {
  if (!sightings.length) return { start: 0, counts: [], brush: null };
  const times = sightings.map((s) => Date.parse(s.ts));
  const start = Math.floor(Math.min(...times) / HOUR_MS) * HOUR_MS;
  const counts = new Array(Math.floor((Math.max(...times) - start) / HOUR_MS) + 1).fill(0);
  for (const ms of times) counts[Math.floor((ms - start) / HOUR_MS)] += 1;
  return { start, counts, brush: null };
}

function drawActivity() {
  const canvas = $("activity-chart");
  canvas.hidden = !activity.counts.length;
  if (!activity.counts.length) return;
  canvas.width = canvas.clientWidth || 340;
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const max = Math.max(...activity.counts), bar = width / activity.counts.length;
  ctx.clearRect(0, 0, width, height);
  if (activity.brush) {
    const [a, b] = activity.brush;
    ctx.fillStyle = "#f5a62355";
    ctx.fillRect(a * bar, 0, (b - a + 1) * bar, height);
  }
  ctx.fillStyle = "#2563a8";
  activity.counts.forEach((n, i) => {
    const h = (height - 12) * n / max;
    ctx.fillRect(i * bar + 0.5, height - h, Math.max(bar - 1, 1), h);
  });
  ctx.fillStyle = "#4a5a6b";
  ctx.font = "10px system-ui";
  ctx.fillText(t("activity.max", { n: max }), 2, 10);
}

/* Brushing: drag across the bars; the hours covered become the attribute form's time range. */
function barAt(event) {
  const canvas = $("activity-chart");
  const x = event.clientX - canvas.getBoundingClientRect().left;
  return Math.max(0, Math.min(activity.counts.length - 1, Math.floor(x / (canvas.clientWidth / activity.counts.length))));
}

let brushFrom = null;
$("activity-chart").addEventListener("pointerdown", (e) => {
  if (!activity || !activity.counts.length) return;
  brushFrom = barAt(e);
  e.currentTarget.setPointerCapture(e.pointerId);
  brushTo(brushFrom);
});
$("activity-chart").addEventListener("pointermove", (e) => { if (brushFrom !== null) brushTo(barAt(e)); });
$("activity-chart").addEventListener("pointerup", (e) => {
  if (brushFrom === null) return;
  brushTo(barAt(e));
  brushFrom = null;
  const [a, b] = activity.brush;
  const start = new Date(activity.start + a * HOUR_MS).toISOString(), end = new Date(activity.start + (b + 1) * HOUR_MS).toISOString();
  $("attr-start").value = localInput(start);
  $("attr-end").value = localInput(end);
  $("activity-range").textContent = t("activity.brushed", { from: fmtTime(start), to: fmtTime(end) });
  document.body.dataset.brushed = `${a}-${b}`;
});

function brushTo(i) {
  activity.brush = [Math.min(brushFrom, i), Math.max(brushFrom, i)];
  drawActivity();
}

/* The heatmap: sightings per camera, drawn as blurred weighted points on a canvas over the map. */
const HeatLayer = L.Layer.extend({
  initialize(points) { this.points = points; },  // [[lat, lon, weight 0..1]]
  onAdd(m) {
    this.canvas = L.DomUtil.create("canvas", "heat-layer leaflet-zoom-hide");
    m.getPanes().overlayPane.append(this.canvas);
    m.on("moveend zoomend resize", this.redraw, this);
    this.redraw();
  },
  onRemove(m) {
    this.canvas.remove();
    m.off("moveend zoomend resize", this.redraw, this);
  },
  redraw() {
    const m = this._map, size = m.getSize(), canvas = this.canvas;
    L.DomUtil.setPosition(canvas, m.containerPointToLayerPoint([0, 0]));
    canvas.width = size.x;
    canvas.height = size.y;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const radius = 28;
    for (const [lat, lon, weight] of this.points) {
      const p = m.latLngToContainerPoint([lat, lon]);
      const g = ctx.createRadialGradient(p.x, p.y, 0, p.x, p.y, radius);
      g.addColorStop(0, `rgba(0,0,0,${0.25 + 0.75 * weight})`);
      g.addColorStop(1, "rgba(0,0,0,0)");
      ctx.fillStyle = g;
      ctx.fillRect(p.x - radius, p.y - radius, 2 * radius, 2 * radius);
    }
    colourise(ctx, size.x, size.y);
  },
});

function colourise(ctx, width, height) {
  if (!width || !height) return;
  const image = ctx.getImageData(0, 0, width, height), px = image.data;
  for (let i = 0; i < px.length; i += 4) {
    const a = px[i + 3] / 255;
    if (!a) continue;
    px[i] = Math.round(255 * Math.min(1, 2 * a));  // blue → yellow → red as the density grows
    px[i + 1] = Math.round(255 * Math.min(1, 2 - 2 * a) * Math.min(1, 2 * a));
    px[i + 2] = Math.round(255 * Math.max(0, 1 - 2 * a));
    px[i + 3] = Math.round(200 * Math.min(1, a * 1.5));
  }
  ctx.putImageData(image, 0, 0);
}

function drawHeat(sightings) {
  heatHolder.clearLayers();
  if (!$("activity-heat").checked) return;
  const perCamera = new Map();
  for (const s of sightings) perCamera.set(s.camera_id, (perCamera.get(s.camera_id) || 0) + 1);
  const max = Math.max(0, ...perCamera.values());
  const points = [...perCamera].filter(([id]) => cameras.has(id)).map(([id, n]) => [cameras.get(id).lat, cameras.get(id).lon, n / max]);
  if (points.length) heatHolder.addLayer(new HeatLayer(points));
  document.body.dataset.heat = String(points.length);
}
$("activity-heat").addEventListener("change", (e) => { if (!e.target.checked) heatHolder.clearLayers(); });

/* ---------- analytics ---------- */
const cameraName = (id) => (cameras.get(id) ? cameras.get(id).name : id);
const LETTERS = "ABCDEFGHIJ";  // the API takes up to ten areas
const AREA_COLORS = ["#7c3aed", "#0f766e", "#b45309", "#be185d", "#1d4ed8"];
const TARGET_COLOR = "#d33", COMPANION_COLOR = "#2563a8";

/* A crop with its caption (the evidence of one pass). */
const cropFigure = (sightingId, alt, caption) => el("figure", { "data-sighting": sightingId },
  el("img", { src: `/sightings/${sightingId}/crop`, alt, loading: "lazy" }), el("figcaption", {}, caption));

/* The analytics page's result list and drawing start afresh with each action (the drawn areas stay). */
function clearAnalytics() {
  $("analytics-results").replaceChildren();
  $("analytics-out").hidden = true;
  analyticsLayer.clearLayers();
  delete document.body.dataset.analytics;
}

/* The results of an action, right after its form with their count (`countKey`), brought into view. */
function showAnalytics(count, countKey) {
  showOut("analytics-out", null, t(countKey, { n: count }));
  document.body.dataset.analytics = String(count);
}

/* ---- areas, drawn in order: a drawing mode (start, click points, undo, finish), and delete ---- */
const drawnAreas = [];  // {points: [[lat, lon]…], start, end}: each area's own time window ("" = the form's)
let drawing = null;     // the points of the area being drawn, or null when not drawing

map.on("click", (e) => {
  if (!drawing || !location.hash.startsWith("#analytics")) return;  // only a drawing click adds a point
  drawing.push([e.latlng.lat, e.latlng.lng]);
  showAreas();
});

function setDrawing(points) {
  drawing = points;
  $("map").classList.toggle("drawing", !!drawing);
  if (drawing) map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
  showAreas();
}

function areaTool(id, text) {
  messageAnchor = $(id);
  showMessage(text);
}

$("area-draw").addEventListener("click", () => {
  if (drawnAreas.length >= LETTERS.length) { areaTool("area-draw", t("area.atMost", { n: LETTERS.length })); return; }
  showMessage("");
  setDrawing([]);
});
$("area-undo").addEventListener("click", () => { if (drawing) { drawing.pop(); showAreas(); } });
$("area-cancel").addEventListener("click", () => { showMessage(""); setDrawing(null); });
$("area-finish").addEventListener("click", () => finishArea());

function finishArea() {
  if (!drawing) return true;
  if (drawing.length < 3) { areaTool("area-finish", t("area.tooFew")); return false; }
  drawnAreas.push({ points: drawing, start: "", end: "" });
  showMessage("");
  setDrawing(null);
  return true;
}

function deleteArea(i) {
  drawnAreas.splice(i, 1);
  showAreas();
}

/* The areas on the map (lettered) and in the list, and the tools for the drawing mode. */
function showAreas() {
  areaLayer.clearLayers();
  const outline = (points, i, dashed) => {
    const color = AREA_COLORS[i % AREA_COLORS.length];
    const shape = points.length > 2 ? L.polygon(points, { color, weight: 2, dashArray: dashed ? "5 5" : null, interactive: false })
      : L.polyline(points, { color, weight: 2, dashArray: "5 5", interactive: false });
    shape.addTo(areaLayer);
    points.forEach((p) => L.circleMarker(p, { radius: 3, color, fillOpacity: 1, interactive: false }).addTo(areaLayer));
    if (points.length) {
      L.marker(points[0], { icon: L.divIcon({ className: "area-label", html: LETTERS[i], iconSize: null }), interactive: false })
        .addTo(areaLayer);
    }
  };
  drawnAreas.forEach((a, i) => outline(a.points, i, false));
  if (drawing) outline(drawing, drawnAreas.length, true);
  const next = LETTERS[drawnAreas.length] || "";
  $("area-draw").hidden = !!drawing;
  $("area-draw").textContent = t("area.draw", { letter: next });
  $("area-draw").disabled = !next;
  for (const id of ["area-finish", "area-undo", "area-cancel"]) $(id).hidden = !drawing;
  if (drawing) {
    $("area-undo").disabled = !drawing.length;
    $("area-finish").textContent = t("area.finish", { letter: next });
  }
  $("area-hint").textContent = drawing ? t("area.drawing", { letter: next, n: drawing.length })
    : drawnAreas.length ? t("area.drawn", { letters: LETTERS.slice(0, drawnAreas.length).split("").join(", ") }) : t("area.hint");
  $("area-list").replaceChildren(...drawnAreas.map((a, i) => el("li", { "data-area": LETTERS[i] },
    el("strong", { class: "area-letter", style: `background:${AREA_COLORS[i % AREA_COLORS.length]}` }, LETTERS[i]),
    el("span", { class: "meta" }, t("area.points", { n: a.points.length, cameras: camerasIn(a.points).length })),
    el("button", { type: "button", class: "secondary inline", "aria-label": t("area.deleteLabel", { letter: LETTERS[i] }),
                   onclick: () => deleteArea(i) }, t("common.delete")),
    el("div", { class: "grid2" }, ...["start", "end"].map((end) => {
      const id = `area-${LETTERS[i]}-${end}`;
      const input = el("input", { id, type: "datetime-local", oninput: (e) => { a[end] = e.target.value; } });
      input.value = a[end];
      return el("div", {}, el("label", { for: id }, t(end === "start" ? "area.ownFrom" : "area.ownTo", { letter: LETTERS[i] })), input);
    })))));
  document.body.dataset.areas = String(drawnAreas.length);
  document.body.dataset.drawing = drawing ? String(drawing.length) : "off";
}

/* Ray casting on [lat, lon] points: is the camera inside the drawn area? */
function inside(points, lat, lon) {
  let hit = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [ya, xa] = points[i], [yb, xb] = points[j];
    if ((ya > lat) !== (yb > lat) && lon < ((xb - xa) * (lat - ya)) / (yb - ya) + xa) hit = !hit;
  }
  return hit;
}
const camerasIn = (points) => [...cameras.values()].filter((c) => inside(points, c.lat, c.lon)).map((c) => c.id);

/* Each area's window as sent: its own times, else the form's. */
function areaWindows() {
  const shared = { start: $("area-start").value, end: $("area-end").value };
  return drawnAreas.map((a) => ({ start: toIso(a.start || shared.start), end: toIso(a.end || shared.end) }));
}

/* The vehicle's passes through the areas in order (the earliest pass in A, then the earliest in B after it, …);
   null when it was not seen in that order. Which area a sighting is in: its camera and its time. */
function inOrder(sightings, windows) {
  const chain = [];
  for (const s of [...sightings].sort((x, y) => new Date(x.ts) - new Date(y.ts))) {
    const i = chain.length, cam = cameras.get(s.camera_id), w = windows[i];
    if (!cam || !inside(drawnAreas[i].points, cam.lat, cam.lon)) continue;
    const when = new Date(s.ts);
    if ((w.start && when < new Date(w.start)) || (w.end && when >= new Date(w.end))) continue;
    chain.push(s);
    if (chain.length === drawnAreas.length) return chain;
  }
  return null;
}

/* Its first pass in each area, whatever the order (shown when the order is not asked for). */
const firstInEach = (sightings, windows) => drawnAreas.map((a, i) => [...sightings].sort((x, y) => new Date(x.ts) - new Date(y.ts))
  .find((s) => {
    const cam = cameras.get(s.camera_id), when = new Date(s.ts), w = windows[i];
    return cam && inside(a.points, cam.lat, cam.lon) && !(w.start && when < new Date(w.start)) && !(w.end && when >= new Date(w.end));
  }));

onSubmitAction("area-form", async (signal) => {
  clearAnalytics();
  if (drawing && !finishArea()) return;
  if (!drawnAreas.length) throw new Error(t("area.none"));
  const windows = areaWindows();
  const body = { kind: "vehicle", areas: drawnAreas.map((a, i) => ({
    polygon: { type: "Polygon", coordinates: [[...a.points, a.points[0]].map(([lat, lon]) => [lon, lat])] }, ...windows[i] })) };
  const found = await api("/search/areas", { ...JSON_POST, body: JSON.stringify(body), signal });
  const ordered = $("area-ordered").checked && drawnAreas.length > 1;
  const names = LETTERS.slice(0, drawnAreas.length).split("").join(t("area.then"));
  const timed = windows.some((w) => w.start || w.end);
  lastQuery = t(ordered ? "query.areasOrdered" : "query.areas", { names })
    + windows.map((w, i) => (w.start || w.end ? ` · ${LETTERS[i]} ${rangeText(w.start, w.end)}` : "")).join("");
  const shown = [];
  let outOfOrder = 0;
  for (const r of found.results) {
    const chain = ordered ? inOrder(r.sightings, windows) : firstInEach(r.sightings, windows);
    if (!chain) { outOfOrder += 1; continue; }
    shown.push({ r, chain: chain.filter(Boolean) });
  }
  $("analytics-results").replaceChildren(...shown.map(({ r, chain }) => el("li", { "data-plate": r.plate || r.key, class: "area-match" },
    el("div", {}, el("strong", {}, r.plate || r.key),
      el("div", { class: "meta" }, t("area.sightings", { n: r.sightings.length }))),
    el("div", { class: "actions" },
      r.plate ? el("button", { type: "button", class: "secondary", onclick: (e) => guarded(() => showTrajectory(r.plate), e.currentTarget) }, t("result.trajectory")) : "",
      el("button", { type: "button", class: "secondary add-to-case", onclick: (e) => addToCase(
        { kind: "sighting", sighting_ids: chain.map((s) => s.id), query: lastQuery }, e.currentTarget) }, t("result.addToCase"))),
    el("div", { class: "side-by-side passes" }, ...chain.map((s, i) => cropFigure(s.id, t("area.cropAlt", { what: r.plate || tw(s.kind), letter: LETTERS[i] }),
      `${LETTERS[i]}: ${cameraName(s.camera_id)} · ${fmtTime(s.ts)}`))))));
  plotSightings(analyticsLayer, shown.flatMap(({ chain }) => chain));
  const notes = [];
  if (!shown.length) notes.push(t(ordered ? "empty.areasOrdered" : "empty.areas", { names }) + (timed ? ` ${t("empty.hintAreaTimes")}` : ""));
  if (outOfOrder) notes.push(t("area.outOfOrder", { n: outOfOrder }));
  if (notes.length) showMessage(notes.join(" "), "info");
  showAnalytics(shown.length, "count.vehicles");
});

showAreas();

/* ---- cloned plates ---- */
onSubmitAction("clones-form", async (signal) => {
  clearAnalytics();
  const params = new URLSearchParams({ max_speed_kmh: $("clones-speed").value });
  const start = toIso($("clones-start").value), end = toIso($("clones-end").value);
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  const found = await api(`/clones?${params}`, { signal });
  const speed = $("clones-speed").value;
  const query = t("query.clones", { speed, range: start || end ? `, ${rangeText(start, end)}` : "" });
  $("analytics-results").replaceChildren(...found.cases.map((c) => {
    const [a, b] = c.sightings;
    const line = [[a.lat, a.lon], [b.lat, b.lon]];
    L.polyline(line, { color: "#d33", dashArray: "6 6" }).addTo(analyticsLayer);
    line.forEach((ll, i) => L.marker(ll, { icon: L.divIcon({ className: "stop-label", html: "AB"[i], iconSize: null }) })
      .bindTooltip(asText(`${c.plate} ${"AB"[i]}: ${cameraName([a, b][i].camera_id)}`)).addTo(analyticsLayer));
    const involved = (c.conflicting_sightings || c.sightings).map((s) => s.sighting_id).slice(0, 100);
    return el("li", { "data-plate": c.plate }, el("div", {},
      el("strong", {}, c.plate),
      el("div", { class: "actions" }, el("button", { type: "button", class: "secondary add-to-case", onclick: (ev) => addToCase(
        { kind: "clone", plate: c.plate, sighting_ids: involved, query }, ev.currentTarget) }, t("result.addToCase"))),
      el("div", { class: "meta" }, t("clones.meta", { speed: c.speed_kmh === null ? null : Math.round(c.speed_kmh),
        km: (c.distance_m / 1000).toFixed(1), from: cameraName(a.camera_id), to: cameraName(b.camera_id),
        look: tw(c.appearance), confidence: Math.round(c.confidence * 100) })),
      el("div", { class: "side-by-side" }, ...[a, b].map((s, i) => cropFigure(s.sighting_id, t("clones.cropAlt", { letter: "AB"[i], plate: c.plate }),
        `${"AB"[i]}: ${cameraName(s.camera_id)} · ${fmtTime(s.ts)}`)))));
  }));
  if (found.cases.length) map.fitBounds(found.cases.flatMap((c) => c.sightings.map((s) => [s.lat, s.lon])), { padding: [40, 40], maxZoom: 15 });
  if (!found.cases.length) showMessage(emptyText(t("empty.clones"), { start, end }), "info");
  showAnalytics(found.cases.length, "count.clones");
});

/* ---- co-travel: each companion with its shared passes (both crops), and both routes ---- */
const routeLayer = L.layerGroup(), passLayer = L.layerGroup();
let cotravel = null;  // {plate, companions, start, end, routes: Map(plate -> trajectory promise)}

function cotravelRange(found, start, end) {
  // The form's range; where it is open, the span of the shared passes with half an hour either side (a trip gap).
  const times = found.companions.flatMap((c) => c.shared.flatMap((r) => [Date.parse(r.ts), Date.parse(r.ts) - 1000 * r.lag_s]));
  const pad = 30 * 60 * 1000;
  return { start: start || new Date(Math.min(...times) - pad).toISOString(), end: end || new Date(Math.max(...times) + pad).toISOString() };
}

function routeOf(plate, signal) {
  if (!cotravel.routes.has(plate)) {
    const fetched = trajectoryOf(plate, cotravel.start, cotravel.end, signal);
    fetched.catch(() => cotravel && cotravel.routes.delete(plate));  // a failed route is fetched again when asked
    cotravel.routes.set(plate, fetched);
  }
  return cotravel.routes.get(plate);
}

/* The target's route wide and solid, the companion's narrow and dashed on top: where they share roads both show. */
function drawRoute(traj, color, label, style) {
  const line = traj.points.map((p) => [p.lat, p.lon]);
  if (line.length > 1) L.polyline(line, { color, ...style }).bindTooltip(asText(label), { sticky: true }).addTo(routeLayer);
  for (const p of traj.points) {
    L.circleMarker([p.lat, p.lon], { radius: 4, color, fillOpacity: 1 })
      .bindTooltip(asText(`${label} · ${p.camera_name || cameraName(p.camera_id)} · ${fmtTime(p.ts)}`)).addTo(routeLayer);
  }
  return line;
}

/* Select a companion: its row and its shared passes are highlighted, and its route drawn beside the target's. */
async function selectCompanion(plate, signal) {
  const c = cotravel.companions.find((x) => x.plate === plate);
  for (const row of $("analytics-results").querySelectorAll("li.companion")) {
    const on = row.dataset.plate === plate;
    row.classList.toggle("current", on);
    row.querySelector("button.select").setAttribute("aria-pressed", String(on));
  }
  passLayer.clearLayers();
  for (const r of c.shared) {
    const cam = cameras.get(r.camera_id);
    if (!cam) continue;
    L.circleMarker([cam.lat, cam.lon], { radius: 12, color: "#f5a623", weight: 3, fill: false })
      .bindTooltip(asText(t("cotravel.passTip", { plate: c.plate, target: cotravel.plate, camera: cam.name, lag: Math.round(r.lag_s) }))).addTo(passLayer);
  }
  document.body.dataset.cotravelSelected = plate;
  const [target, companion] = await Promise.all([routeOf(cotravel.plate, signal), routeOf(plate, signal)]);
  if (document.body.dataset.cotravelSelected !== plate) return;  // another was chosen meanwhile
  routeLayer.clearLayers();
  const line = [...drawRoute(target, TARGET_COLOR, t("cotravel.target", { plate: cotravel.plate }), { weight: 7, opacity: 0.6 }),
                ...drawRoute(companion, COMPANION_COLOR, t("cotravel.companion", { plate }), { weight: 3, dashArray: "8 6" })];
  if (line.length) map.fitBounds(line, { padding: [40, 40], maxZoom: 15 });
  document.body.dataset.routes = `${target.points.length},${companion.points.length}`;
  document.body.dataset.routeCompanion = plate;
  $("cotravel-chosen").textContent = plate;
}

function companionItem(c, windowS) {
  const select = el("button", { type: "button", class: "secondary select", "aria-pressed": "false" }, t("cotravel.show"));
  select.addEventListener("click", (e) => runAction(e.currentTarget, (signal) => selectCompanion(c.plate, signal)));
  const passes = c.shared.map((r) => {
    const targetTs = new Date(Date.parse(r.ts) - 1000 * r.lag_s).toISOString();
    return el("li", { class: "pass", "data-camera": r.camera_id },
      el("div", { class: "meta" }, `${cameraName(r.camera_id)} · ${t("cotravel.lag", { lag: Math.round(r.lag_s) })}`),
      el("div", { class: "side-by-side" },
        cropFigure(r.target_sighting_id, t("cotravel.at", { who: t("cotravel.target", { plate: cotravel.plate }), camera: cameraName(r.camera_id) }),
                   `${cotravel.plate} · ${fmtTime(targetTs)}`),
        cropFigure(r.sighting_id, t("cotravel.at", { who: t("cotravel.companion", { plate: c.plate }), camera: cameraName(r.camera_id) }),
                   `${c.plate} · ${fmtTime(r.ts)}`)));
  });
  return el("li", { class: "companion", "data-plate": c.plate },
    el("div", {}, el("strong", {}, c.plate), el("div", { class: "meta" },
      t("cotravel.meta", { cameras: c.cameras, trips: c.trips, lag: Math.round(c.mean_lag_s), std: Math.round(c.lag_std_s) }))),
    el("div", { class: "actions" }, select,
      el("button", { type: "button", class: "secondary", onclick: (e) => guarded(() => showTrajectory(c.plate), e.currentTarget) }, t("result.trajectory")),
      el("button", { type: "button", class: "secondary add-to-case", onclick: (ev) => addToCase({
        kind: "cotravel", plate: cotravel.plate, other_plate: c.plate, query: t("query.cotravel", { plate: cotravel.plate, window: windowS }),
        sighting_ids: [...new Set(c.shared.flatMap((r) => [r.target_sighting_id, r.sighting_id]))].slice(0, 100) },
        ev.currentTarget) }, t("result.addToCase"))),
    el("ol", { class: "passes", "aria-label": t("cotravel.passes", { plate: c.plate, target: cotravel.plate }) }, ...passes));
}

onSubmitAction("cotravel-form", async (signal) => {
  clearAnalytics();
  routeLayer.clearLayers();
  passLayer.clearLayers();
  for (const key of ["routes", "routeCompanion", "cotravelSelected"]) delete document.body.dataset[key];
  const plate = $("cotravel-plate").value.trim().toUpperCase();
  const windowS = $("cotravel-window").value;
  const params = new URLSearchParams({ window_s: windowS });
  const start = toIso($("cotravel-start").value), end = toIso($("cotravel-end").value);
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  const found = await api(`/co-travel/${encodeURIComponent(plate)}?${params}`, { signal });
  lastQuery = t("query.cotravel", { plate: found.plate, window: windowS });
  if (!found.companions.length) {
    showMessage(emptyText(t("empty.cotravel", { plate, window: windowS }), { start, end }), "info");
    showAnalytics(0, "count.companions");
    return;
  }
  cotravel = { plate: found.plate, companions: found.companions, routes: new Map(), ...cotravelRange(found, start, end) };
  routeLayer.addTo(analyticsLayer);
  passLayer.addTo(analyticsLayer);
  $("analytics-results").replaceChildren(
    el("li", { class: "legend meta" }, el("span", { class: "swatch", style: `background:${TARGET_COLOR}` }),
       ` ${t("cotravel.target", { plate: found.plate })} `,
       el("span", { class: "swatch", style: `background:${COMPANION_COLOR}` }), ` ${t("cotravel.companion", { plate: "" }).trim()} `,
       el("strong", { id: "cotravel-chosen" }, ""), " ",
       t("cotravel.routes", { from: fmtTime(cotravel.start), to: fmtTime(cotravel.end) })),
    ...found.companions.map((c) => companionItem(c, windowS)));
  showAnalytics(found.companions.length, "count.companions");
  await selectCompanion(found.companions[0].plate, signal);
});

/* ---------- alerts ---------- */
let unseen = 0;
function toast(alert) {
  const box = el("div", { class: `toast ${alert.severity}`, role: "status" },
    el("strong", {}, t("alert.toast", { severity: tw(alert.severity), target: alert.target })),
    el("div", {}, `${alert.details.rule || ""} · ${cameraName(alert.camera_id)}`));
  $("toasts").append(box);
  setTimeout(() => box.remove(), 8000);
}

function alertItem(alert) {
  const ack = el("button", { type: "button", class: "secondary" }, alert.acked_by ? t("alert.acked", { by: alert.acked_by }) : t("alert.ack"));
  if (alert.acked_by) ack.disabled = true;
  ack.addEventListener("click", () => runAction(ack, async (signal) => {
    const done = await api(`/alerts/${encodeURIComponent(alert.id)}/ack`, { method: "POST", signal });
    ack.textContent = t("alert.acked", { by: done.acked_by });
    ack.dataset.acked = "true";
  }).then(() => { if (ack.dataset.acked) ack.disabled = true; }));
  const entry = alert.details.pattern ? `${alert.details.pattern}${alert.details.reason ? ` (${alert.details.reason})` : ""}` : "";
  return el("li", { "data-alert": alert.id },
    el("img", { src: `/sightings/${alert.sighting_id}/crop`, alt: t("alert.cropAlt", { target: alert.target }) }),
    el("div", {}, el("strong", {}, `${alert.target}`), el("div", { class: "meta" },
      `${tw(alert.severity)} · ${alert.details.rule || alert.rule_id}${entry ? ` · ${t("alert.entry", { entry })}` : ""} · ${cameraName(alert.camera_id)} · ${fmtTime(alert.ts)}`)),
    el("div", { class: "actions" }, ack));
}

let alertsShown = [];

function plotAlerts() {
  plotSightings(viewLayers.alerts, alertsShown.map((a) => ({ id: a.sighting_id, camera_id: a.camera_id, ts: a.ts, kind: "alert",
                                                             attributes: { plate: a.target } })), "#d33");
}

async function loadAlerts() {
  alertsShown = await api("/alerts?limit=50");
  $("alert-list").replaceChildren(...alertsShown.map(alertItem));
  plotAlerts();
}

let stream = null;
function connectStream() {
  if (stream) stream.close();
  const source = new EventSource("/alerts/stream");  // same origin: the session cookie goes with it
  stream = source;
  source.onopen = () => { $("stream-state").textContent = t("stream.live"); document.body.dataset.stream = "open"; };
  source.onerror = () => {
    $("stream-state").textContent = t("stream.reconnecting");
    if (source.readyState !== EventSource.CLOSED || stream !== source) return;  // the browser retries by itself
    // Refused (the session ended?): /auth/me shows the sign-in page if so, else try again shortly.
    stream = null;
    api("/auth/me").then(() => setTimeout(() => { if (!stream && me) connectStream(); }, 3000)).catch(() => {});
  };
  source.addEventListener("signed-out", () => {  // disabled, or the token rotated: no more alerts here
    source.close();
    stream = null;
    $("stream-state").textContent = t("stream.signedOut");
    api("/auth/me").catch(() => {});  // shows the sign-in page
  });
  source.addEventListener("alert", (e) => {
    const alert = JSON.parse(e.data);
    $("alert-list").prepend(alertItem(alert));
    alertsShown = [alert, ...alertsShown].slice(0, 50);
    plotAlerts();
    toast(alert);
    if (!location.hash.startsWith("#alerts")) {
      unseen += 1;
      $("alert-count").textContent = String(unseen);
      $("alert-count").hidden = false;
    }
  });
}

/* Watchlists with their entries and the rules that alert on them; a supervisor can delete either. */
async function loadWatchlists() {
  if (!hasRole("investigator")) return;
  // Rules are a supervisor's to read: an investigator's request would only be refused (and logged as such).
  const [lists, rules] = await Promise.all([api("/watchlists"), hasRole("supervisor") ? api("/rules").catch(() => []) : []]);
  fillListSelects(lists);
  const entries = await Promise.all(lists.map((w) => api(`/watchlists/${encodeURIComponent(w.id)}/entries`).catch(() => [])));
  $("watchlists").replaceChildren(...lists.map((w, i) => watchlistItem(w, entries[i], rules.filter((r) => r.watchlist_id === w.id))));
}

function deleteButton(label, path) {
  const button = el("button", { type: "button", class: "secondary inline", "data-min-role": "supervisor" }, label);
  button.hidden = !hasRole("supervisor");
  button.addEventListener("click", () => runAction(button, async (signal) => {
    await api(path, { method: "DELETE", signal });
    await loadWatchlists();
  }));
  return button;
}

function watchlistItem(w, entries, rules) {
  const id = encodeURIComponent(w.id);
  return el("li", { "data-watchlist": w.name }, el("div", { class: "grow" },
    el("strong", {}, w.name), ` (${tw(w.kind)})`,
    el("ul", { class: "entries" }, ...entries.map((e) => el("li", { "data-entry": e.value || e.id },
      el("span", {}, `${e.value || t("wl.faceEntry")} · ${tw(e.match)} · ${e.reason} · ${e.created_by}`),
      deleteButton(t("common.delete"), `/watchlists/${id}/entries/${encodeURIComponent(e.id)}`)))),
    el("ul", { class: "rules" }, ...rules.map((r) => el("li", { "data-rule": r.id },
      el("span", {}, t("wl.rule", { name: r.name, severity: tw(r.severity) }) + (r.active ? "" : ` · ${t("wl.inactive")}`)),
      deleteButton(t("wl.deleteRule"), `/rules/${encodeURIComponent(r.id)}`)))),
    rules.length ? "" : el("div", { class: "meta" }, t("wl.noRule"))));
}

onSubmitAction("watchlist-form", async (signal, form) => {
  const body = Object.fromEntries(new FormData(form).entries());
  await api("/watchlists", { ...JSON_POST, body: JSON.stringify(body), signal });
  form.reset();
  await loadWatchlists();
  showMessage(t("wl.created"), "info");
});

function fillListSelects(lists) {
  const options = (kinds) => lists.filter((w) => kinds.includes(w.kind)).map((w) => el("option", { value: w.id }, w.name));
  for (const [id, kinds] of [["entry-list", ["plate"]], ["import-list", ["plate"]], ["enrol-list", ["face"]],
                             ["rule-list", ["plate", "face", "attribute"]]]) {
    const chosen = $(id).value;
    $(id).replaceChildren(...options(kinds));
    if (chosen) $(id).value = chosen;
  }
  fillCameraOptions($("rule-cameras"));
}

/* A rule with its settings: severity, minimum confidence, a time-of-day window (in the browser's zone), cameras. */
onSubmitAction("rule-form", async (signal, form) => {
  const list = $("rule-list").selectedOptions[0];
  const body = { name: t("rule.name", { list: list ? list.textContent : $("rule-list").value }), watchlist_id: $("rule-list").value,
                 severity: $("rule-severity").value, min_confidence: Number($("rule-confidence").value) || 0, tz: ZONE,
                 camera_ids: [...$("rule-cameras").selectedOptions].map((o) => o.value) };
  if ($("rule-from").value) body.time_from = $("rule-from").value;
  if ($("rule-to").value) body.time_to = $("rule-to").value;
  await api("/rules", { ...JSON_POST, body: JSON.stringify(body), signal });
  form.reset();
  await loadWatchlists();
  showMessage(t("rule.created", { name: body.name, severity: tw(body.severity) }), "info");
});

onSubmitAction("import-form", async (signal, form) => {
  const file = $("import-file").files[0];
  if (!file) throw new Error(t("import.choose"));
  const data = new FormData();
  data.append("file", file);
  const done = await api(`/watchlists/${encodeURIComponent($("import-list").value)}/import`, { method: "POST", body: data, signal });
  form.reset();
  await loadWatchlists();
  showMessage(t("import.done", { n: done.imported }), "info");
});

onSubmitAction("enrol-form", async (signal, form) => {
  const data = new FormData();
  for (const file of $("enrol-files").files) data.append("files", file);
  for (const name of ["label", "reason", "created_by"]) data.append(name, form.elements[name].value);
  await api(`/watchlists/${encodeURIComponent($("enrol-list").value)}/faces`, { method: "POST", body: data, signal });
  form.reset();
  await loadWatchlists();
  showMessage(t("enrol.done"), "info");
});

/* A rule alerts on a whole watchlist (the API has no per-entry rule): "alert on it" makes the list's one rule
   when it has none, never a second one (two rules would raise two alerts for one sighting). */
onSubmitAction("entry-form", async (signal, formNode) => {
  const form = Object.fromEntries(new FormData(formNode).entries());
  const entry = { value: form.value, match: form.match, reason: form.reason, created_by: form.created_by };
  await api(`/watchlists/${encodeURIComponent(form.watchlist)}/entries`, { ...JSON_POST, body: JSON.stringify(entry), signal });
  let note = "";
  if ($("entry-rule").checked) {
    const rules = await api("/rules", { signal });
    const listName = $("entry-list").selectedOptions[0] ? $("entry-list").selectedOptions[0].textContent : form.watchlist;
    if (rules.some((r) => r.watchlist_id === form.watchlist && r.active)) note = ` ${t("wl.ruleExists")}`;
    else {
      await api("/rules", { ...JSON_POST, signal, body: JSON.stringify({ name: t("rule.name", { list: listName }), watchlist_id: form.watchlist, severity: "high" }) });
      note = ` ${t("wl.ruleMade", { list: listName })}`;
    }
  }
  await loadWatchlists();
  showMessage(t("wl.watched", { value: form.value }) + note, "info");
});

/* ---------- cases: the open case, add-to-case, the case page ---------- */
let lastQuery = "";  // what the latest search asked: saved with the findings added from its results
let openCase = null;  // the registered case the case bar names ({id, ref, title, status, ...}), or null

/* An error shown right after the control that caused it (not at the foot of the panel). */
function inlineError(anchor, text) {
  let box = anchor.nextElementSibling;
  if (!box || !box.classList.contains("inline-error")) {
    box = el("div", { class: "inline-error", role: "alert" });
    anchor.after(box);
  }
  box.textContent = text || "";
  box.hidden = !text;
}

function searched(query) {
  lastQuery = query;
  $("search-query").textContent = query;
  inlineError($("search-save-button"), "");
  $("search-save-button").disabled = false;
  $("search-save-button").classList.remove("done");
  $("search-save-button").textContent = t("search.save");
}

function setCaseBar(ref, reason) {
  for (const [id, key, value] of [["case-ref", CASE_KEY, ref], ["case-reason", REASON_KEY, reason]]) {
    $(id).value = value;
    sessionStorage.setItem(key, value);
  }
  caseIdle();
}

function showOpenCase() {
  const link = $("case-open");
  link.hidden = !openCase;
  if (openCase) {
    link.textContent = `${openCase.title} (${tw(openCase.status)})`;
    link.href = `#cases?id=${encodeURIComponent(openCase.id)}`;
    link.classList.toggle("closed", openCase.status !== "open");
  }
  document.body.dataset.openCase = openCase ? openCase.ref : "";
}

let lookupTimer = null;
/* The case bar's number, when it names a registered case, makes that case the one findings are added to. */
function lookUpCase() {
  clearTimeout(lookupTimer);
  const { ref } = currentCase();
  if (!ref || !validRef(ref) || !hasRole("investigator")) { openCase = null; showOpenCase(); return; }
  lookupTimer = setTimeout(async () => {
    try {
      const found = await api(`/cases?ref=${encodeURIComponent(ref)}`);
      if (currentCase().ref === ref) { openCase = found.cases[0] || null; showOpenCase(); }
    } catch (_) { /* the case bar still works by hand; adding to a case says what is missing */ }
  }, 200);
}

async function addToCase(body, button) {
  inlineError(button, "");
  if (!openCase) {
    inlineError(button, t("cases.notRegistered"));
    return;
  }
  if (openCase.status !== "open") {
    inlineError(button, t("cases.closedNoMore", { ref: openCase.ref }));
    return;
  }
  button.disabled = true;
  try {
    await api(`/cases/${encodeURIComponent(openCase.id)}/items`, { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    button.textContent = t("cases.added", { ref: openCase.ref });
    button.classList.add("done");
  } catch (err) {
    button.disabled = false;
    if (!(err instanceof SignedOut)) inlineError(button, err.message || String(err));
  }
}

$("search-save-button").addEventListener("click", (e) => {
  if (lastQuery) addToCase({ kind: "search", query: lastQuery }, e.currentTarget);
});

function showCasesView() {
  const id = new URLSearchParams(location.hash.split("?")[1] || "").get("id");
  $("case-page").hidden = !id;
  $("case-index").hidden = !!id;
  if (id) showCase(id); else loadCases();
}

async function loadCases() {
  $("case-list-error").hidden = true;
  try {
    const found = await api("/cases");
    $("case-list").replaceChildren(...found.cases.map((c) => el("li", { "data-case": c.ref },
      el("div", { class: "grow" }, el("strong", {}, c.ref), ` ${c.title}`,
        el("div", { class: "meta" }, t("cases.listMeta", { status: tw(c.status), owner: c.owner, opened: fmtTime(c.created) }))),
      el("div", { class: "actions" }, el("button", { type: "button", class: "secondary", onclick: () => openCaseById(c) }, t("cases.open"))))));
    if (!found.cases.length) $("case-list").append(el("li", { class: "meta" }, t("cases.none")));
  } catch (err) {
    if (!(err instanceof SignedOut)) { $("case-list-error").textContent = err.message; $("case-list-error").hidden = false; }
  }
}

/* Opening a case: an open one becomes the case of every search (the case bar); a closed one is only shown. */
function openCaseById(c) {
  if (c.status === "open") setCaseBar(c.ref, c.reason);
  openCase = c.status === "open" ? c : openCase;
  showOpenCase();
  location.hash = `#cases?id=${encodeURIComponent(c.id)}`;
}

let shownCase = null;

function caseItem(item, sightings) {
  const lines = [];
  if (item.plate) lines.push(item.other_plate ? t("cases.with", { plate: item.plate, other: item.other_plate }) : item.plate);
  if (item.start || item.end) lines.push(`${item.start ? fmtTime(item.start) : "…"} – ${item.end ? fmtTime(item.end) : "…"}`);
  const shown = item.sighting_ids.map((id) => sightings.get(id)).filter(Boolean);
  const first = shown[0];
  if (first) {
    const cam = cameras.get(first.camera_id);
    lines.push(`${(first.attributes && first.attributes.plate) || tw(first.kind)} · ${cam ? cam.name : first.camera_id} · ${fmtTime(first.ts)}`);
  }
  if (item.sighting_ids.length > 1) lines.push(t("count.sightings", { n: item.sighting_ids.length }));
  const remove = el("button", { type: "button", class: "secondary" }, t("cases.remove"));
  remove.addEventListener("click", async () => {
    inlineError(remove, "");
    try {
      await api(`/cases/${encodeURIComponent(shownCase.id)}/items/${encodeURIComponent(item.id)}`, { method: "DELETE" });
      await showCase(shownCase.id);
    } catch (err) { if (!(err instanceof SignedOut)) inlineError(remove, err.message); }
  });
  return el("li", { "data-item": item.kind },
    ...shown.slice(0, 2).map((s) => el("img", { src: `/sightings/${s.id}/crop`, alt: t("crop.alt", { kind: tw(s.kind), id: s.id }), loading: "lazy" })),
    el("div", { class: "grow" }, el("strong", {}, t(`item.${item.kind}`, {}, item.kind)),
      ...lines.map((line) => el("div", { class: "meta" }, line)),
      item.query ? el("div", { class: "meta" }, t("cases.foundBy", { query: item.query })) : "",
      item.note ? el("div", {}, item.note) : "",
      el("div", { class: "meta" }, t("cases.addedBy", { by: item.added_by, when: fmtTime(item.added) }))),
    shownCase.status === "open" ? el("div", { class: "actions" }, remove) : "");
}

async function showCase(id) {
  $("case-action-error").hidden = true;
  let file;
  try {
    file = await api(`/cases/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err instanceof SignedOut) return;
    $("case-title").textContent = "";
    $("case-action-error").textContent = err.message;
    $("case-action-error").hidden = false;
    return;
  }
  const c = file.case;
  shownCase = c;
  if (openCase && openCase.id === c.id) { openCase = c; showOpenCase(); }
  $("case-title").textContent = `${c.ref} · ${c.title}`;
  const facts = [[t("cases.reason"), c.reason], [t("cases.owner"), c.owner], [t("cases.opened"), fmtTime(c.created)],
                 [t("cases.status"), tw(c.status) + (c.closed ? ` ${t("cases.closedBy", { when: fmtTime(c.closed), by: c.closed_by })}` : "")]];
  $("case-header").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const sightings = new Map(file.sightings.map((s) => [s.id, s]));
  $("case-items").replaceChildren(...file.items.map((item) => caseItem(item, sightings)));
  if (!file.items.length) $("case-items").append(el("li", { class: "meta" }, t("cases.empty")));
  $("case-item-count").textContent = `(${file.items.length})`;
  $("case-notes").replaceChildren(...file.notes.map((n) => el("li", {}, el("div", { class: "meta" }, `${n.author}, ${fmtTime(n.ts)}`), n.text)));
  $("case-note-form").hidden = c.status !== "open";
  $("case-close").hidden = c.status !== "open";
  document.body.dataset.caseItems = String(file.items.length);
}

$("case-back").addEventListener("click", () => { location.hash = "#cases"; });

$("case-new-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const box = $("case-new-error");
  box.hidden = true;
  const body = { ...Object.fromEntries(new FormData(e.target).entries()), zone: ZONE };  // the report's times
  try {
    const made = await api("/cases", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    e.target.reset();
    openCaseById(made);
  } catch (err) {
    if (err instanceof SignedOut) return;
    box.textContent = err.status === 409 ? t("cases.exists", { ref: body.ref }) : err.message;
    box.hidden = false;
  }
});

$("case-note-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const box = $("case-note-error");
  box.hidden = true;
  try {
    await api(`/cases/${encodeURIComponent(shownCase.id)}/notes`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                                    body: JSON.stringify({ text: $("case-note-text").value }) });
    $("case-note-text").value = "";
    await showCase(shownCase.id);
  } catch (err) {
    if (!(err instanceof SignedOut)) { box.textContent = err.message; box.hidden = false; }
  }
});

$("case-close").addEventListener("click", async () => {
  const box = $("case-action-error");
  box.hidden = true;
  if (!confirm(t("cases.confirmClose", { ref: shownCase.ref }))) return;
  try {
    await api(`/cases/${encodeURIComponent(shownCase.id)}/close`, { method: "POST" });
    await showCase(shownCase.id);
  } catch (err) {
    if (!(err instanceof SignedOut)) { box.textContent = err.message; box.hidden = false; }
  }
});

/* The evidence package, in the app's language: built in the background (a large case takes minutes) with its
   progress on the button, then fetched (so a refusal is shown here, not as a page of JSON) and saved as a file. */
$("case-export").addEventListener("click", async () => {
  const button = $("case-export"), box = $("case-action-error");
  box.hidden = true;
  button.disabled = true;
  const label = button.textContent;
  button.textContent = t("cases.preparing");
  try {
    const base = `/cases/${encodeURIComponent(shownCase.id)}/exports`;
    let job = await api(`${base}?lang=${LANG}`, { method: "POST" });
    while (job.state === "queued" || job.state === "building") {
      await new Promise((done) => setTimeout(done, 500));
      job = await api(`${base}/${job.id}`);
      if (job.total) button.textContent = t("cases.preparingDone", { percent: Math.round((100 * job.done) / job.total) });
    }
    if (job.state !== "done") throw new Error(job.error || job.state);
    const response = await fetch(`${base}/${job.id}/file`, { credentials: "same-origin" });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      if (response.status === 401) { showLogin(t("login.ended")); return; }
      throw new Error(errorText(response.status, detail));
    }
    const name = (/filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "") || [])[1] || job.filename || "evidence.zip";
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    box.textContent = t("cases.exportFailed", { error: err.message || err });
    box.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
});

/* ---------- audit (supervisors): the log's entries, filtered and paged; its verification; its CSV ---------- */
// Common actions for the action filter (it matches an action exactly: method and route, as the log records them).
const AUDIT_ACTIONS = ["login", "GET /search/plates", "POST /search/attributes", "POST /search/image", "POST /search/face",
                       "POST /search/areas", "GET /trajectories/{plate}", "GET /clones", "GET /co-travel/{plate}",
                       "GET /sightings", "GET /cases/{case_id}", "GET /cases/{case_id}/export", "GET /audit"];
let auditOffset = 0;

/* The filters, as GET /audit and GET /audit/export take them. */
function auditFilters() {
  const params = new URLSearchParams();
  for (const name of ["user", "case", "action", "about"]) {
    const value = $(`audit-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  const start = toIso($("audit-start").value), end = toIso($("audit-end").value);
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  return params;
}

async function loadAudit(signal) {
  const filters = auditFilters(), limit = Number($("audit-limit").value);
  $("audit-export").href = `/audit/export?${filters}`;  // the same filters, all pages
  const page = new URLSearchParams(filters);
  page.set("limit", String(limit));
  page.set("offset", String(auditOffset));
  const entries = await api(`/audit?${page}`, { signal });
  $("audit-rows").replaceChildren(...entries.map(auditRow));
  $("audit-count").textContent = entries.length ? t("audit.range", { from: auditOffset + 1, to: auditOffset + entries.length })
    : t(auditOffset ? "audit.noMore" : "audit.none");
  $("audit-newer").disabled = auditOffset === 0;
  $("audit-older").disabled = entries.length < limit;
  const actions = new Set([...AUDIT_ACTIONS, ...entries.map((e) => e.action)]);
  $("audit-actions").replaceChildren(...[...actions].map((a) => el("option", { value: a })));
  document.body.dataset.audit = String(entries.length);
}

const orDash = (v) => (v === null || v === undefined || v === "" ? "—" : v);

function auditRow(e) {
  return el("tr", { "data-seq": String(e.seq) },
    el("td", {}, fmtTime(e.ts)),
    el("td", {}, e.actor, el("div", { class: "meta" }, tw(e.role))),
    el("td", { class: "action" }, e.action),
    el("td", {}, orDash(e.case_ref)),
    el("td", {}, orDash(e.reason)),
    el("td", { class: e.status >= 400 ? "refused" : "" }, orDash(e.status)),
    el("td", {}, orDash(e.result_count)));
}

const auditSubmit = () => $("audit-form").querySelector("button[type=submit]");
onSubmitAction("audit-form", (signal) => { auditOffset = 0; return loadAudit(signal); });
$("audit-clear").addEventListener("click", () => {
  $("audit-form").reset();
  auditOffset = 0;
  runAction(auditSubmit(), loadAudit);
});
for (const [id, step] of [["audit-newer", -1], ["audit-older", 1]]) {
  $(id).addEventListener("click", (e) => {
    auditOffset = Math.max(0, auditOffset + step * Number($("audit-limit").value));
    runAction(e.currentTarget, loadAudit);
  });
}

/* Every entry's seal and link checked, and the log's length against its signed checkpoint. */
onSubmitActionButton("audit-verify", async (signal) => {
  const v = await api("/audit/verify", { signal });
  const box = $("audit-verdict");
  box.textContent = v.ok ? [t("audit.ok", { n: v.entries }), v.checkpoint !== null && v.checkpoint !== undefined ? t("audit.checkpoint", { n: v.checkpoint }) : "",
                            v.unkeyed ? t("audit.unkeyed", { n: v.unkeyed }) : ""].filter(Boolean).join(" ")
    : t("audit.broken", { seq: orDash(v.first_broken), problem: v.problem || "" });
  box.className = v.ok ? "verdict ok" : "verdict broken";
  box.dataset.ok = String(v.ok);
  box.hidden = false;
});

/* ---------- navigation ---------- */
// The role each page needs: a lower role is shown the map (what it can use) instead.
const VIEW_ROLE = { search: "investigator", analytics: "investigator", cases: "investigator", audit: "supervisor" };

function route() {
  let view = (location.hash || "#map").slice(1).split("?")[0];
  if (!$(`view-${view}`) || (me && !hasRole(VIEW_ROLE[view] || "viewer"))) {
    if (me) history.replaceState(null, "", "#map");
    view = "map";
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === view);
  document.body.dataset.view = view;
  if (view === "alerts") { unseen = 0; $("alert-count").hidden = true; }
  if (view === "cases" && me) showCasesView();
  if (view === "audit" && me) runAction(auditSubmit(), loadAudit);
  if (view === "search") fillCameraSelect();
  showViewLayer(view);
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
  $("case-ref").setAttribute("aria-invalid", String(missing && (!ref || !validRef(ref))));
  $("case-reason").setAttribute("aria-invalid", String(missing && !reason));
  if (missing) {
    const empty = !ref ? $("case-ref") : !reason ? $("case-reason") : null;
    if (empty && document.activeElement !== empty) empty.focus();
  }
}

function caseIdle() {
  if (!caseProblem()) noteCase(t("case.recorded"));
  else noteCase(t("case.needed"));
}

for (const [id, key] of [["case-ref", CASE_KEY], ["case-reason", REASON_KEY]]) {
  $(id).value = sessionStorage.getItem(key) || "";
  $(id).addEventListener("input", (e) => {
    sessionStorage.setItem(key, e.target.value);
    const problem = caseProblem();
    if ($("case-note").classList.contains("missing") && problem) noteCase(problem, true);
    else caseIdle();
    if (id === "case-ref") lookUpCase();
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
  $("who-role").textContent = tw(me.role);
  for (const node of document.querySelectorAll("[data-min-role]")) node.hidden = !hasRole(node.dataset.minRole);
  $("viewer-note").hidden = hasRole("investigator");  // a viewer is told what the app offers them
  for (const id of ["wl-by", "entry-by", "enrol-by"]) if (!$(id).value) $(id).defaultValue = me.name;  // a form reset keeps it
  caseIdle();
  lookUpCase();
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
    box.textContent = err.status === 401 ? t("login.badToken")
      : err.status === 422 ? t("login.partial") : t("login.failed", { error: err.message || err });
    box.className = "";
    box.hidden = false;
    $("login-token").select();
  } finally {
    $("login-submit").disabled = false;
  }
});

$("lang").value = LANG;
$("lang").addEventListener("change", (e) => setLang(e.target.value));  // remembered; the page is shown again in it

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
    const linked = hasRole("investigator") && new URLSearchParams(location.hash.split("?")[1] || "").get("plate");  // #map?plate=…
    const prefetched = linked ? trajectoryOf(linked) : null;  // fetched while the base layers load
    if (prefetched) prefetched.catch(() => {});  // reported where it is awaited
    // the alerts are drawn once the cameras are known, so that they name cameras, not ids
    await Promise.all([loadBase(), loadCameras().then(loadAlerts)]);
    connectStream();
    loaded = true;
    document.body.dataset.ready = "true";
    if (linked) await showTrajectory(linked, null, null, prefetched);
  });
  // After the first paint: the watchlists, the form's words and its cameras are not needed for it.
  if (location.hash.startsWith("#search")) fillCameraSelect();
  await Promise.all([guarded(loadWatchlists), loadVocabulary()]);
}

(async () => {
  route();
  let who;
  try {
    who = await api("/auth/me");
  } catch (err) {
    if (!(err instanceof SignedOut)) showLogin(t("login.noServer", { error: err.message || err }), "error");
    return;
  }
  await signedIn(who);
})();
