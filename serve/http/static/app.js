// The ganserve playground: plain JavaScript over the gateway's public HTTP API (docs/gateway.md).
// Every URL is relative to the page, so the playground works wherever the gateway is mounted.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const el = (tag, { dataset = {}, ...props } = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

// ---- talking to the gateway ----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    Object.assign(this, { status, code, retryAfter });
  }
  describe() {
    const head = this.status ? `${this.status} ${this.code}` : this.code;
    const advice = [this.retryAfter && `Try again in ${this.retryAfter} s.`,
      this.status === 401 && "Enter an API key at the top of the page."].filter(Boolean);
    const message = advice.length && !/[.!?]$/.test(this.message) ? `${this.message}.` : this.message;
    return [`${head}: ${message}`, ...advice].join(" ");
  }
}

// JSON with exact 64-bit seeds: a seed is sent as a BigInt, written as a bare number.
const toJson = (value) =>
  JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `@big:${v}` : v)).replace(/"@big:(\d+)"/g, "$1");

// A gateway that asks for API keys (401) gets the key typed into the header's field, kept for the tab.
const apiKey = () => sessionStorage.getItem("ganserve-api-key") || "";

async function api(path, { method = "GET", json, body, contentType, accept = "application/json" } = {}) {
  const init = { method, headers: { Accept: accept } };
  if (apiKey()) init.headers.Authorization = `Bearer ${apiKey()}`;
  if (json !== undefined) {
    init.body = toJson(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = contentType || "application/octet-stream";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "unreachable", `the gateway did not answer (${err.message})`);
  }
  if (!response.ok) {
    if (response.status === 401) $("#key-form").hidden = false;
    throw await errorOf(response);
  }
  return response;
}

// The gateway's error body is {"error": {"code", "message"}}; 429 carries Retry-After.
async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

function showMessage(panel, text, kind = "error") {
  const box = $(".message", panel);
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = !text;
}

function fail(panel, err) {
  showMessage(panel, err instanceof ApiError ? err.describe() : err.message);
  return null;
}

async function busy(button, work) {
  button.disabled = true;
  button.classList.add("working");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.classList.remove("working");
  }
}

// A panel's form sent: ``build(form)`` makes the request (a mistake in it is the panel's message),
// ``send(request)`` asks the gateway and shows the answer (a refusal is the panel's message), then the
// metrics refresh. The button is disabled meanwhile.
async function submitPanel(panel, form, build, send) {
  await busy($("button[type=submit]", form), async () => {
    let request;
    try {
      request = build(form);
    } catch (err) {
      return fail(panel, err);
    }
    try {
      await send(request);
    } catch (err) {
      fail(panel, err);
    }
    refreshMetrics();
  });
}

// An <img> that only joins the page once it decoded: a failure becomes a message, never a broken image.
function loadImage(src, alt) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.alt = alt;
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`the gateway's ${alt} could not be decoded`));
    img.src = src;
  });
}

const dataUrl = (image) => `data:${image.media_type};base64,${image.data}`;

// ---- what the gateway exposes: limits (OpenAPI schema), models --------------------------------------

const state = { limits: {}, models: [], modelsError: null };

// Pages and endpoints a gateway may serve on another port only (its docs_endpoint, metrics_endpoint
// settings): answered 404 here, their links go and the page goes on without them.
function absent(what) {
  $$(`[data-needs=${what}]`).forEach((node) => node.remove());
}

async function loadLimits() {
  try {
    const schema = await (await api("openapi.json")).json();
    const s = schema.components.schemas;
    const gen = s.GenerateRequest.properties;
    const promptMax = (gen.prompt.anyOf || []).map((v) => v.maxLength).find(Boolean);
    state.limits = {
      n: gen.n.maximum,
      frames: s.InterpolateRequest.properties.frames.maximum,
      prompt: promptMax,
      truncation: (gen.truncation.anyOf || [gen.truncation]).map((v) => v.minimum).find((m) => m !== undefined)
        ?? gen.truncation.minimum,
    };
  } catch (err) {
    state.limits = {}; // no schema: the gateway still checks every request
    if (err.status === 404) absent("docs");
  }
  for (const input of $$("input[name=n]")) if (state.limits.n) input.max = state.limits.n;
  const frames = $("#walk-form [name=frames]");
  if (state.limits.frames) frames.max = state.limits.frames;
  for (const input of $$("input[name=prompt], input[name=prompt_b]")) {
    if (state.limits.prompt) input.maxLength = state.limits.prompt;
  }
  for (const input of $$("input[name=truncation]")) {
    if (state.limits.truncation) input.min = state.limits.truncation;
  }
}

async function loadModels() {
  const panel = $("#models-panel");
  try {
    const body = await (await api("models")).json();
    state.models = body.models;
    state.modelsError = null;
    showMessage(panel, "");
    renderModels(body);
  } catch (err) {
    state.modelsError = err;
    fail(panel, err);
  }
  for (const panel of $$("section[data-kind]")) {
    const kind = panel.dataset.kind;
    const select = $("select[name=model]", panel);
    const models = state.models.filter((m) => m.kind === kind);
    // what a request naming no model gets: the default model's latest version
    const latest = models.filter((m) => m.is_default).sort((a, b) => b.version - a.version)[0];
    const previous = select.value;
    select.replaceChildren(...models.map((m) => el("option", {
      value: `${m.name}@${m.version}`, textContent: `${m.name} v${m.version}${m === latest ? " (default)" : ""}`,
      selected: previous ? `${m.name}@${m.version}` === previous : m === latest,
    })));
    const none = models.length === 0;
    for (const control of $$("input, select, button", $("form", panel))) control.disabled = none;
    if (none && state.modelsError) showMessage(panel, "The models could not be listed (see Models below).", "info");
    else if (none) showMessage(panel, `No ${kind} model is loaded in this gateway.`, "info");
    else if ($(".message", panel).dataset.kind === "info") showMessage(panel, "");
  }
  renderVocabulary();
  showLevelsOption();
  $("#prompt-form [name=mix]").disabled = !$("#prompt-form [name=prompt_b]").value.trim();
}

// The model version a panel's select names ("name@version"), as request fields.
function chosen(select) {
  const at = select.value.lastIndexOf("@");
  return { model: select.value.slice(0, at), version: Number(select.value.slice(at + 1)) };
}

// ... and as /models lists it.
function listedModel(select) {
  const { model, version } = chosen(select);
  return state.models.find((m) => m.name === model && m.version === version);
}

// The "levels" box of the seed grid: only for a pyramid model (one whose /models metadata lists levels).
function showLevelsOption() {
  const model = listedModel($("#grid-form [name=model]"));
  $("#levels-option").hidden = !(model && model.metadata["ganserve.levels"]);
}

function shapeOf(m) {
  switch (m.kind) {
    case "unconditional":
    case "text-conditional-generator":
    case "pyramid-coarse":
    case "pyramid-level":
      return `z ${m.latent_dim} → ${m.channels}×${m.image_size}×${m.image_size}`;
    case "text-conditional":
      return `prompt (${m.tokenizer}, ${m.max_tokens} chars) → ${m.channels}×${m.image_size}×${m.image_size}`;
    case "text-encoder":
      return `${m.max_tokens} tokens → ${m.embedding_dim}-d`;
    case "super-resolution": {
      const tile = m.metadata["ganserve.tile_size"];
      return `×${m.scale}` + (tile ? `, ${tile}px tiles (overlap ${m.metadata["ganserve.tile_overlap"] || 0})` : "");
    }
    default:
      return "";
  }
}

function renderModels(body) {
  const rows = body.models.map((m) => {
    const steps = m.steps.length ? el("small", { textContent: ` = ${m.steps.map((s) => s.model).join(" → ")}` }) : null;
    const details = el("details", {}, el("summary", { textContent: "metadata" }),
      el("dl", {}, ...Object.entries(m.metadata).filter(([k]) => k !== "ganserve.config")
        .flatMap(([k, v]) => [el("dt", { textContent: k.replace(/^ganserve\./, "") }), el("dd", { textContent: v })])));
    const family = m.metadata["ganserve.family"] || "";
    return el("tr", { dataset: { model: m.name } },
      el("td", {}, el("strong", { textContent: m.name }), ` v${m.version}`, steps),
      el("td", {}, m.kind, m.is_default ? el("span", { className: "badge", textContent: "default" }) : null),
      el("td", { textContent: shapeOf(m) }),
      el("td", {}, family, details));
  });
  $("#models-table tbody").replaceChildren(...rows);
  const problems = $("#model-problems");
  problems.replaceChildren(...body.problems.map((p) =>
    el("li", { textContent: `${p.model}${p.version ? ` v${p.version}` : ""}: ${p.message}` })));
  problems.hidden = body.problems.length === 0;
}

// ---- form values -----------------------------------------------------------------------------------

// A seed field: empty -> undefined (the gateway draws one), else an unsigned 64-bit integer (BigInt).
function seedOf(input) {
  const text = input.value.trim();
  if (!text) return undefined;
  if (!/^\d+$/.test(text) || BigInt(text) >= 2n ** 64n) {
    throw new Error(`${input.name} must be a whole number from 0 to 2^64 − 1, got "${text}"`);
  }
  return BigInt(text);
}

// A number field, checked against the limits the gateway publishes (min/max set by loadLimits).
function numberOf(input, label, { optional = false } = {}) {
  const text = input.value.trim();
  if (!text && optional) return undefined;
  const value = Number(text);
  if (!text || !Number.isFinite(value)) throw new Error(`${label} must be a number`);
  if (input.step !== "any" && input.type === "number" && !input.step && !Number.isInteger(value)) {
    throw new Error(`${label} must be a whole number`);
  }
  if (input.min !== "" && value < Number(input.min)) throw new Error(`${label} must be at least ${input.min}`);
  if (input.max !== "" && value > Number(input.max)) {
    throw new Error(`${label} must be at most ${input.max} (this gateway's limit)`);
  }
  return value;
}

const compact = (object) => Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== ""));

// ---- seed grid ---------------------------------------------------------------------------------------

async function renderImages(container, body, seeds, panel) {
  const figures = await Promise.all(body.images.map(async (image, i) => {
    const seed = seeds[i] ?? String(image.seed);
    const img = await loadImage(dataUrl(image), `seed ${seed}`);
    const label = seed.length > 8 ? `…${seed.slice(-6)}` : seed; // a drawn seed has up to 16 digits
    const tile = el("button", { type: "button", className: "tile", title: `seed ${seed}` }, img,
      el("span", { textContent: label }));
    Object.assign(tile.dataset, { seed, model: body.model, version: body.version });
    tile.levels = (image.levels || []).map(dataUrl); // a pyramid's levels, coarse to fine
    tile.addEventListener("click", () => select(panel, tile, img.src));
    return tile;
  }));
  container.replaceChildren(...figures);
  return figures;
}

function select(panel, tile, src) {
  $$(".tile.selected", panel).forEach((t) => t.classList.remove("selected"));
  tile.classList.add("selected");
  const detail = $(".detail", panel);
  if (!detail) return;
  const { seed, model, version } = tile.dataset;
  $("img", detail).src = src;
  $("img", detail).alt = `seed ${seed}, enlarged`;
  $(".seed", detail).textContent = seed;
  $(".meta", detail).textContent = `${model} v${version} · ${$("img", tile).naturalWidth}×${$("img", tile).naturalHeight} px`;
  const levels = $(".levels", detail);
  if (levels) {
    levels.replaceChildren(...(tile.levels || []).map((src, i) => {
      const image = el("img", { src, alt: `seed ${seed}, level ${tile.levels.length - 1 - i}` });
      const caption = el("figcaption");
      image.addEventListener("load", () => { caption.textContent = `${image.naturalWidth}×${image.naturalHeight}`; });
      return el("figure", {}, image, caption);
    }));
    levels.hidden = !(tile.levels || []).length;
  }
  const link = $(".download", detail);
  link.href = src;
  link.download = `${model}-${seed}.png`;
  detail.dataset.seed = seed;
  detail.dataset.src = src;
  detail.hidden = false;
}

async function generateGrid(event) {
  event.preventDefault();
  const panel = $("#grid-panel");
  await submitPanel(panel, event.target, (form) => compact({
    ...chosen(form.model), n: numberOf(form.n, "images"), seed: seedOf(form.seed),
    truncation: numberOf(form.truncation, "truncation", { optional: true }),
    levels: !$("#levels-option").hidden && form.levels.checked ? true : undefined,
  }), async (request) => {
    const response = await api("generate", { method: "POST", json: request });
    const seeds = (response.headers.get("X-Ganserve-Seed") || "").split(",");
    const body = await response.json();
    await renderImages($("#grid"), body, seeds, panel);
    $("#grid-detail").hidden = true;
    showMessage(panel, `${body.images.length} images from ${body.model} v${body.version}, seeds ${seeds[0]}` +
      (seeds.length > 1 ? ` … ${seeds[seeds.length - 1]}` : ""), "ok");
  });
}

// ---- latent walk -------------------------------------------------------------------------------------

const walk = { frames: [], t: [], index: 0, timer: null, delay: 120, direction: 1 };

function showFrame(index) {
  walk.index = index;
  $("#walk-frame").src = walk.frames[index];
  $("#walk-scrub").value = index;
  $("#walk-caption").textContent = `frame ${index + 1} / ${walk.frames.length} · t = ${walk.t[index].toFixed(3)}`;
  $$("#walk-strip img").forEach((img, i) => img.classList.toggle("current", i === index));
}

function play(on) {
  clearInterval(walk.timer);
  walk.timer = null;
  if (on && walk.frames.length > 1) {
    walk.timer = setInterval(() => {
      let next = walk.index + walk.direction;
      if (next < 0 || next >= walk.frames.length) { // there and back again
        walk.direction = -walk.direction;
        next = walk.index + walk.direction;
      }
      showFrame(next);
    }, walk.delay);
  }
  $("#walk-play").textContent = walk.timer ? "Pause" : "Play";
}

async function runWalk(event) {
  event.preventDefault();
  const panel = $("#walk-panel");
  await submitPanel(panel, event.target, (form) => compact({
    ...chosen(form.model), seed_a: seedOf(form.seed_a), seed_b: seedOf(form.seed_b),
    frames: numberOf(form.frames, "frames"), frame_duration_ms: numberOf(form.frame_duration_ms, "ms per frame"),
    truncation: numberOf(form.truncation, "truncation", { optional: true }), format: "png",
  }), async (request) => {
    const response = await api("interpolate", { method: "POST", json: request });
    const [seedA, seedB] = (response.headers.get("X-Ganserve-Seed") || ",").split(",");
    const body = await response.json();
    const images = await Promise.all(body.frames.map((f, i) => loadImage(dataUrl(f), `frame ${i + 1}`)));
    play(false);
    Object.assign(walk, { frames: images.map((img) => img.src), t: body.t, index: 0, direction: 1,
      delay: request.frame_duration_ms, request: { ...request, seed_a: BigInt(seedA), seed_b: BigInt(seedB) } });
    $("#walk-strip").replaceChildren(...images.map((img, i) => {
      img.addEventListener("click", () => { play(false); showFrame(i); });
      return img;
    }));
    $("#walk-scrub").max = images.length - 1;
    $("#walk").hidden = false;
    showFrame(0);
    play(true);
    showMessage(panel, `${images.length} frames from seed ${seedA} to seed ${seedB} (${body.model} v${body.version})`, "ok");
  });
}

async function downloadGif(event) {
  event.preventDefault();
  const panel = $("#walk-panel");
  if (!walk.request) return;
  try {
    const response = await api("interpolate", { method: "POST", json: { ...walk.request, format: "gif" }, accept: "image/gif" });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `walk-${walk.request.seed_a}-${walk.request.seed_b}.gif` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    fail(panel, err);
  }
}

// ---- text to image -----------------------------------------------------------------------------------

function renderVocabulary() {
  const box = $("#vocabulary");
  const model = listedModel($("#prompt-form [name=model]"));
  if (!model) return box.replaceChildren();
  if (!model.vocabulary) {
    box.replaceChildren(el("p", { className: "hint", textContent:
      `${model.name} publishes no vocabulary: it reads any text (${model.tokenizer}, the first ${model.max_tokens} characters).` }));
    return;
  }
  const groups = Object.entries(model.vocabulary).map(([attribute, values]) =>
    el("div", { className: "vocab-group", dataset: { attribute } }, el("h3", { textContent: attribute }),
      ...Object.entries(values).map(([value, words]) => {
        const chip = el("button", { type: "button", className: "chip", textContent: words[0],
          title: `${attribute} ${value}: ${words.join(", ")}` });
        chip.dataset.word = words[0];
        chip.addEventListener("click", () => addWord($("#prompt-form [name=prompt]"), words[0]));
        return chip;
      })));
  box.replaceChildren(el("p", { className: "hint", textContent: `Words ${model.name} was trained on (click to add):` }), ...groups);
}

function addWord(input, word) {
  input.value = `${input.value.trim()} ${word}`.trim();
  input.focus();
}

let promptRun = 0;

async function generatePrompt(event) {
  if (event) event.preventDefault();
  const panel = $("#prompt-panel");
  const run = ++promptRun;
  await submitPanel(panel, $("#prompt-form"), (form) => {
    const promptB = form.prompt_b.value.trim() ? form.prompt_b.value : undefined;
    return compact({
      ...chosen(form.model), prompt: form.prompt.value, prompt_b: promptB,
      mix: promptB === undefined ? undefined : Number(form.mix.value),
      n: numberOf(form.n, "images"), seed: seedOf(form.seed),
    });
  }, async (request) => {
    let response, body;
    try {
      response = await api("generate", { method: "POST", json: request });
      body = await response.json();
    } catch (err) {
      if (run === promptRun) throw err;
    }
    if (run !== promptRun) return; // a newer request (the mix slider moved again) wins
    const seeds = (response.headers.get("X-Ganserve-Seed") || "").split(",");
    const grid = $("#prompt-grid");
    await renderImages(grid, body, seeds, panel);
    grid.dataset.mix = request.mix ?? "";
    const warnings = $("#prompt-warnings");
    warnings.replaceChildren(...body.warnings.map((w) => el("li", { textContent: w })));
    warnings.hidden = body.warnings.length === 0;
    showMessage(panel, `“${request.prompt}”` + (request.prompt_b ? ` mixed with “${request.prompt_b}” at ${request.mix.toFixed(2)}` : "") +
      ` · ${body.model} v${body.version}`, "ok");
  });
}

let mixTimer = null;

function onMix() {
  const form = $("#prompt-form");
  form.mix_out.value = Number(form.mix.value).toFixed(2);
  clearTimeout(mixTimer);
  if ($("#prompt-grid").children.length) mixTimer = setTimeout(() => generatePrompt(), 150);
}

// ---- upscale -----------------------------------------------------------------------------------------

let upscaleUrls = [];

async function upscale(file, name) {
  const panel = $("#upscale-panel");
  const form = $("#upscale-form");
  if (!form.model.value) return;
  upscaleUrls.forEach((u) => URL.revokeObjectURL(u));
  upscaleUrls = [];
  $("#compare-box").hidden = true;
  showMessage(panel, `Upscaling ${name} (${(file.size / 1024).toFixed(1)} kB)…`, "info");
  const started = performance.now();
  try {
    const { model, version } = chosen(form.model);
    const query = new URLSearchParams({ model, version });
    const response = await api(`upscale?${query}`, { method: "POST", body: file, contentType: file.type, accept: "image/png" });
    const blob = await response.blob();
    const seconds = (performance.now() - started) / 1000;
    upscaleUrls = [URL.createObjectURL(file), URL.createObjectURL(blob)];
    const [before, after] = await Promise.all([loadImage(upscaleUrls[0], "input"), loadImage(upscaleUrls[1], "upscaled image")]);
    $("#before").src = before.src;
    $("#after").src = after.src;
    const compare = $("#compare");
    compare.style.aspectRatio = `${after.naturalWidth} / ${after.naturalHeight}`;
    compare.dataset.outputWidth = after.naturalWidth;
    compare.dataset.outputHeight = after.naturalHeight;
    compare.dataset.seconds = seconds.toFixed(3);
    const factor = after.naturalWidth / before.naturalWidth;
    $("#upscale-info").textContent = `${before.naturalWidth}×${before.naturalHeight} → ${after.naturalWidth}×${after.naturalHeight} px ` +
      `(×${Number.isInteger(factor) ? factor : factor.toFixed(2)}) in ${seconds.toFixed(2)} s · ` +
      `${response.headers.get("X-Ganserve-Model")} v${response.headers.get("X-Ganserve-Model-Version")} · ${(blob.size / 1024).toFixed(1)} kB`;
    const link = $("#upscale-download");
    link.href = upscaleUrls[1];
    link.download = `${name.replace(/\.[^.]*$/, "")}-x${factor}.png`;
    $("#compare-box").hidden = false;
    setSplit($("#compare-slider").value);
    showMessage(panel, "");
  } catch (err) {
    fail(panel, err);
  }
  refreshMetrics();
}

function setSplit(percent) {
  $("#compare").style.setProperty("--split", `${percent}%`);
}

function wireDrop() {
  const drop = $("#drop");
  const input = $("#upscale-file");
  input.addEventListener("change", () => {
    if (input.files.length) upscale(input.files[0], input.files[0].name);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) upscale(file, file.name);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  $("#compare-slider").addEventListener("input", (e) => setSplit(e.target.value));
}

// ---- live metrics (Prometheus text format) ------------------------------------------------------------

function parsePrometheus(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

const sum = (samples) => samples.reduce((total, s) => total + s.value, 0);

// The upper bound of the bucket holding quantile q of a histogram's cumulative buckets.
function quantile(buckets, q) {
  const byBound = new Map();
  for (const b of buckets) byBound.set(b.labels.le, (byBound.get(b.labels.le) || 0) + b.value);
  const sorted = [...byBound].map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!total) return null;
  return sorted.find(([, n]) => n >= q * total)[0];
}

const ms = (seconds) => (seconds === null || seconds === undefined || Number.isNaN(seconds) ? "–"
  : seconds === Infinity ? "> largest bucket" : seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`);

const metricsState = { previous: null, timer: null, pending: false, off: false };

async function refreshMetrics() {
  if (metricsState.pending || metricsState.off) return;
  metricsState.pending = true;
  const panel = $("#metrics-panel");
  try {
    const text = await (await api("metrics", { accept: "text/plain" })).text();
    renderMetrics(parsePrometheus(text));
    showMessage(panel, "");
  } catch (err) {
    if (err.status === 404) {
      clearInterval(metricsState.timer);
      metricsState.off = true;
      absent("metrics");
      panel.classList.add("off");
      showMessage(panel, "This gateway does not serve /metrics on this port (its metrics_endpoint setting).", "info");
    } else {
      fail(panel, err);
    }
  } finally {
    metricsState.pending = false;
  }
}

function renderMetrics(samples) {
  const named = (name, filter = () => true) => samples.filter((s) => s.name === name && filter(s.labels));
  const requests = named("ganserve_requests_total");
  const total = sum(requests);
  const errors = sum(requests.filter((s) => s.labels.outcome !== "ok"));
  const now = performance.now();
  let rate = null;
  if (metricsState.previous && now > metricsState.previous.at) {
    rate = Math.max(0, total - metricsState.previous.total) / ((now - metricsState.previous.at) / 1000);
  }
  metricsState.previous = { total, at: now };
  const durationSum = sum(named("ganserve_request_duration_seconds_sum"));
  const durationCount = sum(named("ganserve_request_duration_seconds_count"));
  const tiles = [
    ["requests", total.toFixed(0)],
    ["per second", rate === null ? "–" : rate.toFixed(1)],
    ["errors", errors.toFixed(0)],
    ["in flight", sum(named("ganserve_requests_in_flight")).toFixed(0)],
    ["mean latency", ms(durationCount ? durationSum / durationCount : null)],
    ["models loaded", sum(named("ganserve_models_loaded")).toFixed(0)],
  ];
  $("#metric-tiles").replaceChildren(...tiles.map(([label, value]) =>
    el("div", { className: "tile-figure", dataset: { metric: label } }, el("strong", { textContent: value }), el("span", { textContent: label }))));

  const endpoints = [...new Set(requests.map((s) => s.labels.endpoint))].sort();
  $("#endpoint-table tbody").replaceChildren(...endpoints.map((endpoint) => {
    const mine = (l) => l.endpoint === endpoint;
    const count = sum(named("ganserve_request_duration_seconds_count", mine));
    const mean = count ? sum(named("ganserve_request_duration_seconds_sum", mine)) / count : null;
    const p95 = quantile(named("ganserve_request_duration_seconds_bucket", mine), 0.95);
    return el("tr", { dataset: { endpoint } }, el("td", { textContent: endpoint }),
      el("td", { textContent: sum(requests.filter((s) => mine(s.labels))).toFixed(0) }),
      el("td", { textContent: sum(requests.filter((s) => mine(s.labels) && s.labels.outcome !== "ok")).toFixed(0) }),
      el("td", { textContent: ms(mean) }), el("td", { textContent: ms(p95) }));
  }));

  const models = [...new Set(named("ganserve_backend_batch_size_count").map((s) => `${s.labels.model} v${s.labels.version}`))].sort();
  $("#batch-table tbody").replaceChildren(...models.map((key) => {
    const mine = (l) => `${l.model} v${l.version}` === key;
    const count = sum(named("ganserve_backend_batch_size_count", mine));
    const mean = count ? sum(named("ganserve_backend_batch_size_sum", mine)) / count : null;
    const largest = quantile(named("ganserve_backend_batch_size_bucket", mine), 1);
    const inferenceCount = sum(named("ganserve_backend_inference_duration_seconds_count", mine));
    const inference = inferenceCount ? sum(named("ganserve_backend_inference_duration_seconds_sum", mine)) / inferenceCount : null;
    return el("tr", { dataset: { model: key } }, el("td", { textContent: key }), el("td", { textContent: count.toFixed(0) }),
      el("td", { textContent: mean === null ? "–" : mean.toFixed(1) }),
      el("td", { textContent: largest === null ? "–" : largest === Infinity ? "more than the largest bucket" : `≤ ${largest}` }),
      el("td", { textContent: ms(inference) }));
  }));
  $("#metrics-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---- readiness ---------------------------------------------------------------------------------------

async function refreshStatus() {
  const pill = $("#status");
  try {
    const response = await fetch("readyz", { headers: { Accept: "application/json" } });
    const body = await response.json();
    pill.dataset.state = response.ok ? "ready" : "loading";
    pill.textContent = body.status;
    return response.ok;
  } catch (_) {
    pill.dataset.state = "down";
    pill.textContent = "gateway unreachable";
    return false;
  }
}

// ---- start ------------------------------------------------------------------------------------------

async function start() {
  $("#grid-form").addEventListener("submit", generateGrid);
  $("#walk-form").addEventListener("submit", runWalk);
  $("#prompt-form").addEventListener("submit", generatePrompt);
  $("#walk-play").addEventListener("click", () => play(!walk.timer));
  $("#walk-scrub").addEventListener("input", (e) => { play(false); showFrame(Number(e.target.value)); });
  $("#walk-gif").addEventListener("click", downloadGif);
  const promptForm = $("#prompt-form");
  promptForm.model.addEventListener("change", renderVocabulary);
  $("#grid-form [name=model]").addEventListener("change", showLevelsOption);
  promptForm.mix.addEventListener("input", onMix);
  promptForm.prompt_b.addEventListener("input", () => { promptForm.mix.disabled = !promptForm.prompt_b.value.trim(); });
  for (const button of $$("#grid-detail [data-walk]")) {
    button.addEventListener("click", () => {
      $(`#walk-form [name=${button.dataset.walk}]`).value = $("#grid-detail").dataset.seed;
      $("#walk-panel").scrollIntoView({ behavior: "smooth" });
    });
  }
  $("#grid-detail [data-upscale]").addEventListener("click", async () => {
    const detail = $("#grid-detail");
    const blob = await (await fetch(detail.dataset.src)).blob();
    $("#upscale-panel").scrollIntoView({ behavior: "smooth" });
    upscale(new File([blob], `seed-${detail.dataset.seed}.png`, { type: "image/png" }), `seed-${detail.dataset.seed}.png`);
  });
  wireDrop();
  const keyForm = $("#key-form");
  keyForm.hidden = !apiKey();
  keyForm.key.value = apiKey();
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("ganserve-api-key", keyForm.key.value.trim());
    loadLimits();
    loadModels();
    refreshMetrics();
  });

  let ready = await refreshStatus();
  await loadLimits();
  await loadModels();
  refreshMetrics();
  document.body.dataset.ready = "true"; // the page is wired (tests wait for this)
  setInterval(async () => {
    const wasReady = ready;
    ready = await refreshStatus();
    if (ready && !wasReady) loadModels(); // models finished loading after the page opened
  }, 5000);
  metricsState.timer = setInterval(() => { if (!document.hidden) refreshMetrics(); }, 3000);
}

document.addEventListener("DOMContentLoaded", start);
