// Portrait Studio web: small, dependency-free page behaviour. The server does the work.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

async function api(url, body, method = "POST") {
  const opts = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const res = await fetch(url, opts);
  let data = {};
  try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
  if (!res.ok) { const err = new Error(data.error || res.statusText); err.hint = data.hint; err.status = res.status; throw err; }
  return data;
}
const explain = (err) => err.message + (err.hint ? " — fix: " + err.hint : "");

// ---- brief builder -------------------------------------------------------------------
function briefBuilder(form) {
  let references = [];
  const modelBoxes = $$('input[name="models"]');
  const max = Number($(".models").dataset.max || 4);

  function collect() {
    const brief = {};
    for (const el of form.elements) {
      if (!el.name || el.name.startsWith("_") || el.type === "file" || el.type === "button") continue;
      let value;
      const kind = el.dataset.type;
      if (kind === "bool") { if (!el.checked) continue; value = true; }
      else {
        const raw = el.value.trim();
        if (raw === "") continue;
        if (kind === "int") value = parseInt(raw, 10);
        else if (kind === "float") value = parseFloat(raw);
        else if (kind === "list") value = raw.split(",").map((s) => s.trim()).filter(Boolean);
        else if (el.name === "output.seed") value = /^\d+$/.test(raw) ? parseInt(raw, 10) : raw;
        else value = raw;
      }
      const path = el.name.split(".");
      let node = brief;
      for (const key of path.slice(0, -1)) node = node[key] = node[key] || {};
      node[path[path.length - 1]] = value;
    }
    const custom = form.elements["_background_custom"].value.trim();
    if (custom) brief.background = { description: custom };
    if (brief.lens && brief.lens.preset) { delete brief.lens.focal_length_mm; delete brief.lens.f_stop; delete brief.lens.camera; }
    if (references.length) brief.references = references.map((r) => ({ path: r.path, role: r.role, rights: r.rights }));
    if (!brief.subject) brief.subject = {};
    return brief;
  }

  function fill(data) {
    form.reset();
    const flat = {};
    (function walk(obj, prefix) {
      for (const [k, v] of Object.entries(obj || {})) {
        const key = prefix ? prefix + "." + k : k;
        if (v && typeof v === "object" && !Array.isArray(v)) walk(v, key); else flat[key] = v;
      }
    })(data, "");
    for (const [key, value] of Object.entries(flat)) {
      const el = form.elements[key];
      if (!el || value === null || value === undefined) continue;
      if (el.type === "checkbox") el.checked = Boolean(value);
      else if (Array.isArray(value)) el.value = value.join(", ");
      else if (el.tagName === "SELECT" && !$$("option", el).some((o) => o.value === String(value))) {
        if (key === "background.description") form.elements["_background_custom"].value = value;
      } else el.value = value;
    }
    references = (data.references || []).map((r) => ({ ...r, name: r.path.split("/").pop() }));
    renderRefs();
    schedule();
  }

  const chosen = () => modelBoxes.filter((b) => b.checked).map((b) => b.value);
  function limitModels() {
    const n = chosen().length;
    for (const box of modelBoxes) box.disabled = !box.checked && n >= max;
    $("#models-note").textContent = n >= max ? `${max} models chosen — the most that fit side by side` : "";
  }

  let timer = null, seq = 0, lastPreview = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 200); }
  async function refresh() {
    const mine = ++seq;
    try {
      const data = await api("/api/brief/preview", { brief: collect(), models: chosen() });
      if (mine !== seq) return;
      lastPreview = data;
      renderPreview(data);
    } catch (err) { $("#brief-error").textContent = explain(err); }
  }
  function imagesPlanned() {
    const locked = $("#shoot-seed").value.trim() !== "";
    return locked ? 1 : Math.max(1, parseInt($("#shoot-seeds").value || $("#shoot-seeds").dataset.default, 10));
  }
  function renderPreview(data) {
    $("#brief-error").textContent = data.ok ? "" : (data.field ? data.field + ": " : "") + data.error + (data.hint ? " — fix: " + data.hint : "");
    $("#preview-yaml").textContent = data.yaml || "";
    $("#preview-models").innerHTML = (data.models || []).map((m) => `
      <div class="model-preview" data-model="${esc(m.id)}">
        <h3>${esc(m.name)} ${m.cost_usd != null ? `<span class="note">$${m.cost_usd.toFixed(3)} per image · ${esc(m.size)}${m.steps ? " · " + m.steps + " steps" : ""}${m.guidance != null ? " · guidance " + m.guidance : ""}</span>` : ""}</h3>
        ${m.error ? `<p class="error">${esc(m.error)}${m.hint ? " — fix: " + esc(m.hint) : ""}</p>` : `<pre class="prompt">${esc(m.prompt)}</pre>`}
        ${(m.warnings || []).length ? `<ul class="warnings">${m.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul>` : ""}
      </div>`).join("");
    const n = imagesPlanned();
    $("#estimate").textContent = data.ok && data.models.length
      ? `Estimated $${(data.total_usd_per_seed * n).toFixed(3)} for ${data.models.length * n} image${data.models.length * n === 1 ? "" : "s"}` : "";
  }

  function renderRefs() {
    $("#refs-list").innerHTML = references.map((r, i) => `<p class="ref">${esc(r.name || r.path)} · ${esc(r.role)} · ${esc(r.rights.who)} (${esc(r.rights.permission)}) <button type="button" data-remove="${i}">remove</button></p>`).join("");
  }
  $("#refs-list").addEventListener("click", (e) => {
    const i = e.target.dataset.remove;
    if (i !== undefined) { references.splice(Number(i), 1); renderRefs(); schedule(); }
  });
  $("#ref-add").addEventListener("click", async () => {
    const file = $("#ref-file").files[0];
    $("#ref-error").textContent = "";
    if (!file) { $("#ref-error").textContent = "choose a photo first"; return; }
    const who = $("#ref-who").value.trim(), source = $("#ref-source").value.trim(), permission = $("#ref-permission").value.trim();
    if (!who || !source || !permission) { $("#ref-error").textContent = "a reference photo needs its consent record: who, source and permission"; return; }
    const body = new FormData();
    body.append("file", file); body.append("who", who); body.append("source", source);
    body.append("permission", permission); body.append("role", $("#ref-role").value);
    try {
      const stored = await api("/api/references", body);
      references.push({ path: stored.path, role: stored.role, rights: { who, source, permission }, name: file.name });
      renderRefs(); schedule();
    } catch (err) { $("#ref-error").textContent = explain(err); }
  });

  $("#save-brief").addEventListener("click", async () => {
    const name = $("#save-name").value.trim() || form.elements["name"].value.trim() || "brief";
    try {
      const saved = await api("/api/brief/save", { brief: collect(), name });
      $("#save-result").textContent = "Saved " + saved.path;
    } catch (err) { $("#save-result").textContent = explain(err); }
  });

  async function start(kind) {
    $("#shoot-error").textContent = "";
    const seedText = $("#shoot-seed").value.trim(), budgetText = $("#shoot-budget").value.trim();
    const body = { brief: collect(), models: chosen(), kind, sandbox: $("#shoot-sandbox").value,
      seeds: seedText || !$("#shoot-seeds").value.trim() ? null : parseInt($("#shoot-seeds").value, 10),
      seed: seedText ? parseInt(seedText, 10) : null, budget: budgetText ? parseFloat(budgetText) : null };
    try {
      const started = await api("/api/shoot", body);
      window.location.href = started.url;
    } catch (err) { $("#shoot-error").textContent = explain(err); }
  }
  $("#shoot").addEventListener("click", () => start("shoot"));
  $("#compare").addEventListener("click", () => start("compare"));

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  for (const box of modelBoxes) box.addEventListener("change", () => { limitModels(); schedule(); });
  for (const id of ["#shoot-seeds", "#shoot-seed"]) $(id).addEventListener("input", () => lastPreview && renderPreview(lastPreview));
  form.elements["_example"].addEventListener("change", async (e) => {
    if (!e.target.value) { fill({}); return; }
    const name = e.target.value;
    fill(await api("/api/examples/" + encodeURIComponent(name), undefined, "GET"));
    form.elements["_example"].value = name;
  });
  limitModels();
  schedule();
}

// ---- gallery: keyboard navigation ------------------------------------------------------
function gridKeys(grid) {
  const tiles = () => $$(".tile", grid);
  function move(delta) {
    const all = tiles();
    if (!all.length) return;
    const at = all.indexOf(document.activeElement);
    const next = at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + delta));
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  }
  function columns() {
    const all = tiles();
    if (all.length < 2) return 1;
    const top = all[0].offsetTop;
    const n = all.findIndex((t) => t.offsetTop !== top);
    return n < 0 ? all.length : n;
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.altKey || e.ctrlKey || e.metaKey) return;
    const step = { ArrowRight: 1, ArrowLeft: -1, j: 1, k: -1, ArrowDown: columns(), ArrowUp: -columns() }[e.key];
    if (step !== undefined) { e.preventDefault(); move(step); }
  });
}

// ---- run page: live progress over SSE --------------------------------------------------
function tileHtml(i) {
  return `<a class="tile" href="${esc(i.url)}" data-id="${esc(i.id)}" data-check="${esc(i.check || "unchecked")}">
    <img src="${esc(i.thumb)}" alt="${esc(i.model)} seed ${esc(i.seed)}">
    <span class="badges"><span class="badge check-${esc(i.check || "unchecked")}">${esc(i.check || "unchecked")}</span>${i.picked ? '<span class="badge picked">★ picked</span>' : ""}${i.sandbox ? '<span class="badge sandbox">sandbox</span>' : ""}</span>
    <span class="caption">${esc(i.model)} · seed ${esc(i.seed)}</span></a>`;
}
function runLive(box) {
  const grid = $("#run-grid");
  const render = (snap) => {
    const p = snap.progress;
    $("#run-progress").max = p.total || 1;
    $("#run-progress").value = p.done + p.failed;
    const job = snap.job ? ` · ${snap.job.status}` : "";
    $("#run-status").textContent = `${p.done} of ${p.total} done${p.failed ? ", " + p.failed + " failed" : ""} · $${p.spent_usd.toFixed(3)} spent${job}`;
    const errors = [...p.errors];
    if (snap.job && snap.job.error) errors.push(snap.job.error + (snap.job.hint ? " — fix: " + snap.job.hint : ""));
    $("#run-errors").innerHTML = errors.map((e) => `<li>${esc(e)}</li>`).join("");
    for (const i of snap.images) {
      const old = $(`.tile[data-id="${i.id}"]`, grid);
      if (!old) grid.insertAdjacentHTML("beforeend", tileHtml(i));
      else if (old.dataset.check !== (i.check || "unchecked")) old.outerHTML = tileHtml(i);
    }
  };
  if (box.dataset.finished === "true") return;
  const source = new EventSource(`/api/runs/${box.dataset.run}/events`);
  source.onmessage = (e) => render(JSON.parse(e.data));
  source.addEventListener("end", () => { source.close(); box.dataset.finished = "true"; document.body.dataset.runFinished = "true"; });
  source.addEventListener("timeout", (e) => {
    source.close();
    $("#run-errors").insertAdjacentHTML("beforeend", `<li>Live progress stopped: ${esc(JSON.parse(e.data).reason)} — reload the page to see where it stands.</li>`);
  });
  source.onerror = () => { if (box.dataset.finished === "true") source.close(); };
}

// ---- detail page: actions as background jobs --------------------------------------------
function watchJob(jobId) {
  const status = $("#job-status");
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  source.onmessage = (e) => {
    const job = JSON.parse(e.data);
    status.dataset.status = job.status;
    let html = `<strong>${esc(job.title)}</strong>: ${esc(job.status)}${job.message ? " — " + esc(job.message) : ""}`;
    if (job.error) html += `<br><span class="error">${esc(job.error)}</span>${job.hint ? " — fix: " + esc(job.hint) : ""}`;
    if (job.status === "done" && job.result_id) {
      html += job.kind === "export" ? ` · <a href="/files/${esc(job.result_id)}" download>download the labelled file</a>`
        : ` · <a href="/images/${esc(job.result_id)}">open the result</a>`;
    }
    status.innerHTML = html;
  };
  source.addEventListener("end", () => source.close());
  source.addEventListener("timeout", (e) => {
    source.close();
    status.insertAdjacentHTML("beforeend", `<br><span class="note">Live progress stopped: ${esc(JSON.parse(e.data).reason)} — see the Jobs page.</span>`);
  });
}
// ---- jobs page: batches (run from the CLI or here) update from the ledger --------------------
function batchesLive(table) {
  const tick = async () => {
    let running = false;
    for (const row of $$("tr.batch", table)) {
      if (!["running", "planned"].includes(row.dataset.status)) continue;
      running = true;
      const r = await fetch(`/api/batches/${row.dataset.batch}/progress`);
      if (!r.ok) continue;
      const b = await r.json();
      row.dataset.status = b.status;
      $(".status", row).textContent = b.status;
      $(".done", row).textContent = `${b.done}/${b.total}`;
      $(".failed", row).textContent = b.failed;
      $(".rate", row).textContent = `${b.images_per_minute.toFixed(1)} img/min`;
      $(".eta", row).textContent = b.eta_s === null ? "?" : `${Math.round(b.eta_s)}s`;
    }
    if (running) setTimeout(tick, 2000);
  };
  tick();
}
function detailPage() {
  const pick = $("#pick");
  if (pick) pick.addEventListener("click", async () => {
    try { await api(`/api/images/${pick.dataset.image}/pick`, {}); window.location.reload(); }
    catch (err) { $("#job-status").textContent = explain(err); }
  });
  const vary = $("#vary");
  if (vary) vary.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const started = await api(`/api/runs/${vary.dataset.run}/vary`, { element: vary.elements.element.value, value: vary.elements.value.value });
      window.location.href = started.url;
    } catch (err) { $("#job-status").textContent = explain(err); }
  });
  for (const form of $$(".job-form")) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    for (const el of form.elements) if (el.name) body[el.name] = el.dataset.type === "float" ? parseFloat(el.value) : el.value;
    try { watchJob((await api(form.dataset.url, body)).job_id); } catch (err) { $("#job-status").textContent = explain(err); }
  });
  for (const button of $$(".job-action")) button.addEventListener("click", async () => {
    try { watchJob((await api(button.dataset.url, JSON.parse(button.dataset.body || "{}"))).job_id); }
    catch (err) { $("#job-status").textContent = explain(err); }
  });
  const toggle = $("#show-overlay");
  if (toggle) toggle.addEventListener("change", () => { $("#overlay").hidden = !toggle.checked; });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea")) return;
    const link = { j: "#next-image", k: "#prev-image" }[e.key];
    if (link && $(link)) window.location.href = $(link).href;
    if (e.key === "Escape") window.location.href = "/gallery";
  });
}

// ---- compare: one zoom for every image ---------------------------------------------------
function compareZoom(box) {
  const range = $("#zoom"), out = $("#zoom-value");
  const apply = () => { box.style.setProperty("--zoom", range.value); out.textContent = Math.round(range.value * 100) + "%"; };
  const first = $(".cell .frame", box), img = $(".cell img", box);
  if (first && img) {
    const fit = Math.min(1, Math.max(0.1, (first.clientWidth - 4) / Number(img.getAttribute("width"))));
    range.value = fit.toFixed(2);
  }
  range.addEventListener("input", apply);
  apply();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = $("#brief-form");
  if (form) briefBuilder(form);
  const grid = $("#gallery-grid") || $("#run-grid");
  if (grid) gridKeys(grid);
  const filters = $("#filters");
  if (filters) for (const sel of $$("select", filters)) sel.addEventListener("change", () => filters.submit());
  const live = $("#run-live");
  if (live) runLive(live);
  if ($("#actions")) detailPage();
  const batches = $("#batches");
  if (batches) batchesLive(batches);
  const compare = $("#compare-view");
  if (compare) compareZoom(compare);
  document.body.dataset.ready = "true";
});
