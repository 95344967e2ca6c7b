// The page: upload an image, show the prediction, why the model chose it (and any
// other class), and every layer's feature maps.
// Plain JavaScript, no build step and no network beyond this service.
"use strict";

const CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const PAGE = 32; // channels drawn per layer before "show more": keeps big layers responsive
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");

keyInput.value = sessionStorage.getItem("cifar10-api-key") || "";
keyInput.addEventListener("input", () => sessionStorage.setItem("cifar10-api-key", keyInput.value));

function headers() {
  const key = keyInput.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function errorMessage(response) {
  // Every API error has the shape {"error": {"code", "message"}}.
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error.message} (${response.status} ${body.error.code})`;
  } catch (_) { /* not JSON: fall through */ }
  return `The service answered ${response.status} ${response.statusText}.`;
}

// The models and versions to choose from (GET /v1/models); "" = the default model,
// or a model's newest available version, as the API takes them.
let models = [];
let lastFile = null;

function chosen() {
  return { model: $("model-select").value, version: $("version-select").value };
}

function fillVersions() {
  const entry = models.find((m) => m.name === $("model-select").value);
  const available = entry ? entry.model_version_status.filter((s) => s.state === "AVAILABLE") : [];
  const select = $("version-select");
  select.replaceChildren(new Option("newest", ""), ...available.map((s) => new Option(s.version, s.version)));
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) return;
  const data = await response.json();
  models = data.models;
  const select = $("model-select");
  const previous = select.value || data.default;
  select.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  select.value = models.some((m) => m.name === previous) ? previous : data.default;
  fillVersions();
  $("model-choice").hidden = false;
}

async function loadModelInfo() {
  const info = $("model-info");
  try {
    const ready = await fetch("/readyz");
    if (!ready.ok) { info.textContent = "The model is still loading; reload in a moment."; return; }
    if (!models.length) await loadModels();
    const { model, version } = chosen();
    const name = model || (await ready.json()).model.name;
    const path = `/v1/models/${encodeURIComponent(name)}` + (version ? `/versions/${encodeURIComponent(version)}` : "");
    const response = await fetch(path, { headers: headers() });
    if (!response.ok) { info.textContent = `${name}. ${await errorMessage(response)}`; return; }
    const data = await response.json();
    const acc = data.metrics && data.metrics.val_accuracy;
    info.textContent = `Model ${data.name}, version ${data.version} (${data.architecture || "?"} network)` +
      (typeof acc === "number" ? `, validation accuracy ${(acc * 100).toFixed(1)}%` : "");
  } catch (err) {
    info.textContent = "Cannot reach the service.";
  }
}

function modelQuery() {
  const { model, version } = chosen();
  return (model ? `&model=${encodeURIComponent(model)}` : "") + (version ? `&version=${encodeURIComponent(version)}` : "");
}

async function classify(file) {
  clearError();
  if (!file) return;
  lastFile = file;
  $("uploaded").src = URL.createObjectURL(file);
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  let response;
  try {
    response = await fetch(`/feature-maps?top_k=5${modelQuery()}`, { method: "POST", body: form, headers: headers() });
  } catch (err) {
    showError("Cannot reach the service. Is it running?");
    return;
  }
  if (!response.ok) {
    $("result").hidden = true;
    $("maps").hidden = true;
    $("explain").hidden = true;
    showError(await errorMessage(response));
    return;
  }
  const data = await response.json();
  render(data);
  // The overlay on the picture needs its pixels; a format the browser cannot show
  // (TIFF) still gets the overlay on the 32x32 input.
  await $("uploaded").decode().catch(() => {});
  await explainBoth(file, data.prediction.top_k.map((t) => t.label));
}

function render(data) {
  $("model-input").src = `data:image/png;base64,${data.input_png_base64}`;
  $("answered-by").textContent = `Answered by ${data.model.name}, version ${data.model.version}.`;
  const bars = $("bars");
  bars.replaceChildren(...data.prediction.top_k.map(({ label, probability }) => {
    const li = document.createElement("li");
    const pct = (probability * 100).toFixed(1);
    li.innerHTML = `<span class="label"></span><span class="bar" role="img"><span></span></span><span class="pct"></span>`;
    li.querySelector(".label").textContent = label;
    li.querySelector(".bar").setAttribute("aria-label", `${label}: ${pct} percent`);
    li.querySelector(".bar span").style.width = `${pct}%`;
    li.querySelector(".pct").textContent = `${pct}%`;
    li.dataset.label = label;
    return li;
  }));
  $("result").hidden = false;
  const layers = $("layers");
  layers.replaceChildren(...data.layers.map(renderLayer));
  $("maps").hidden = false;
}

function renderLayer(layer) {
  const [h, w, c] = layer.shape;
  const section = document.createElement("section");
  section.className = "layer";
  section.dataset.layer = layer.name;
  const title = document.createElement("h3");
  title.innerHTML = `${layer.name} <small>${h}×${w}×${c}</small>`;
  const grid = document.createElement("div");
  grid.className = "channels";
  section.append(title, grid);
  let shown = 0;
  const more = document.createElement("button");
  more.className = "more";
  const drawPage = () => {
    const end = Math.min(c, shown + PAGE);
    for (let ch = shown; ch < end; ch++) grid.append(channelButton(layer, ch));
    shown = end;
    more.hidden = shown >= c;
    more.textContent = `Show ${Math.min(PAGE, c - shown)} more of ${c - shown} remaining channels`;
  };
  more.addEventListener("click", drawPage);
  drawPage();
  section.append(more);
  return section;
}

function channelPixels(layer, ch) {
  const [h, w] = layer.shape;
  let lo = Infinity, hi = -Infinity;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = layer.values[y][x][ch];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const span = hi - lo;
  const img = new ImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const g = span > 0 ? Math.round((layer.values[y][x][ch] - lo) / span * 255) : 0;
    const i = (y * w + x) * 4;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = g;
    img.data[i + 3] = 255;
  }
  return img;
}

function channelButton(layer, ch) {
  const [h, w] = layer.shape;
  const button = document.createElement("button");
  button.type = "button";
  button.title = `${layer.name}, channel ${ch}`;
  button.setAttribute("aria-label", `Enlarge ${layer.name} channel ${ch}`);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").putImageData(channelPixels(layer, ch), 0, 0);
  button.append(canvas);
  button.addEventListener("click", () => zoom(layer, ch, canvas));
  return button;
}

function zoom(layer, ch, source) {
  const canvas = $("zoom-canvas");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  $("zoom-title").textContent = `${layer.name}, channel ${ch} (${layer.shape[0]}×${layer.shape[1]})`;
  canvas.setAttribute("aria-label", `Enlarged ${layer.name} channel ${ch}`);
  $("zoom").showModal();
}

// --- Why this class: Grad-CAM and saliency from POST /explain ---------------------
// The colours mirror app/overlay.py, so the overlay drawn here on the uploaded picture
// matches the one the service draws on the 32x32 input.
const HEAT_ANCHORS = [[0, 0, 0, 130], [0.25, 0, 110, 255], [0.5, 0, 230, 200], [0.75, 255, 220, 0], [1, 220, 20, 0]];
const ALPHA_MIN = 0.2, ALPHA_MAX = 0.7;
const explained = { top: null, chosen: null };
let explainFile = null;

function heatColour(v) {
  const t = Math.min(1, Math.max(0, v));
  let i = 0;
  while (i < HEAT_ANCHORS.length - 2 && t > HEAT_ANCHORS[i + 1][0]) i++;
  const [a, b] = [HEAT_ANCHORS[i], HEAT_ANCHORS[i + 1]];
  const f = (t - a[0]) / (b[0] - a[0]);
  return [1, 2, 3].map((c) => Math.round(a[c] + f * (b[c] - a[c])));
}

function heatCanvas(values) {
  // The 32x32 map as an image whose transparency follows the value, as the server's overlay.
  const h = values.length, w = values[0].length;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const img = new ImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = values[y][x];
    const [r, g, b] = heatColour(v);
    const i = (y * w + x) * 4;
    img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b;
    img.data[i + 3] = Math.round(255 * (ALPHA_MIN + (ALPHA_MAX - ALPHA_MIN) * Math.min(1, Math.max(0, v))));
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
  return canvas;
}

function drawOnPicture(canvas, values) {
  // The service centre-crops to a square before resizing (docs/api.md), so the map
  // covers the picture's central square; smoothing stretches it like a photo.
  const picture = $("uploaded");
  const ctx = canvas.getContext("2d");
  const side = Math.min(picture.naturalWidth, picture.naturalHeight);
  const sx = (picture.naturalWidth - side) / 2, sy = (picture.naturalHeight - side) / 2;
  ctx.imageSmoothingEnabled = true;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (side > 0) ctx.drawImage(picture, sx, sy, side, side, 0, 0, canvas.width, canvas.height);
  ctx.drawImage(heatCanvas(values), 0, 0, canvas.width, canvas.height);
}

function mapLabel(name) {
  return name === "saliency" ? "Saliency (input gradient)" : `Grad-CAM, layer ${name.replace(/^gradcam_/, "")}`;
}

function fillMapChoices(maps) {
  const select = $("explain-map");
  if (select.options.length === maps.length) return;
  select.replaceChildren(...maps.map((m) => new Option(mapLabel(m.name), m.name)));
  // The default: Grad-CAM of the last convolutional block (the map before saliency).
  select.value = maps[maps.length - 2].name;
}

function renderExplanation(which) {
  const data = explained[which];
  const row = $(`explain-${which}`);
  if (!data) return;
  const map = data.maps.find((m) => m.name === $("explain-map").value) || data.maps[data.maps.length - 2];
  row.querySelector("img").src = `data:image/png;base64,${map.overlay_png_base64}`;
  row.querySelector("img").alt = `${mapLabel(map.name)} for ${data.target.label}, over the 32×32 input`;
  const canvas = row.querySelector("canvas");
  canvas.setAttribute("aria-label", `${mapLabel(map.name)} for ${data.target.label}, over your image`);
  drawOnPicture(canvas, map.values);
  row.dataset.label = data.target.label;
  row.dataset.map = map.name;
  const pct = (data.target.probability * 100).toFixed(1);
  row.querySelector(".target").textContent = `${data.target.label} (${pct}%)`;
}

async function explain(which, cls) {
  const form = new FormData();
  form.append("file", explainFile, explainFile.name || "pasted-image");
  // The same model and version as the prediction above it.
  const query = "?format=json" + (cls === null ? "" : `&class=${encodeURIComponent(cls)}`) + modelQuery();
  const response = await fetch(`/explain${query}`, { method: "POST", body: form, headers: headers() });
  if (!response.ok) {
    // A model exported without the explain signature still predicts: say why, keep the rest.
    $("explain-note").textContent = await errorMessage(response);
    $("explain-note").hidden = false;
    $("explain-rows").hidden = true;
    return;
  }
  explained[which] = await response.json();
  fillMapChoices(explained[which].maps);
  renderExplanation(which);
}

async function explainBoth(file, ranking) {
  explainFile = file;
  explained.top = explained.chosen = null;
  $("explain-note").hidden = true;
  $("explain-rows").hidden = false;
  $("explain").hidden = false;
  // The runner-up by default: what would the model look at for its second guess?
  const select = $("explain-class");
  if (!select.options.length) select.replaceChildren(...CLASSES.map((c) => new Option(c, c)));
  select.value = ranking[1];
  await Promise.all([explain("top", null), explain("chosen", select.value)]);
}

function setUpExplain() {
  $("explain-class").addEventListener("change", () => explainFile && explain("chosen", $("explain-class").value));
  $("explain-map").addEventListener("change", () => { renderExplanation("top"); renderExplanation("chosen"); });
}

function setUpInputs() {
  $("file-input").addEventListener("change", (e) => classify(e.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    classify(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData ? e.clipboardData.files : [])][0];
    if (file) classify(file);
  });
  $("samples").replaceChildren(...CLASSES.map((name) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.sample = name;
    button.innerHTML = `<img src="/static/samples/${name}.png" alt="Sample: a ${name}">`;
    button.addEventListener("click", async () => {
      const blob = await (await fetch(`/static/samples/${name}.png`)).blob();
      classify(new File([blob], `${name}.png`, { type: "image/png" }));
    });
    li.append(button);
    return li;
  }));
}

// A new choice shows that version's card and, if an image was chosen, its answer.
function onChoice() {
  loadModelInfo();
  if (lastFile) classify(lastFile);
}

setUpInputs();
setUpExplain();
loadModelInfo();
keyInput.addEventListener("change", () => { models = []; loadModelInfo(); });
$("model-select").addEventListener("change", () => { fillVersions(); onChoice(); });
$("version-select").addEventListener("change", onChoice);
