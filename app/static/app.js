// The page: upload an image, show the prediction and every layer's feature maps.
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
    showError(await errorMessage(response));
    return;
  }
  render(await response.json());
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
loadModelInfo();
keyInput.addEventListener("change", () => { models = []; loadModelInfo(); });
$("model-select").addEventListener("change", () => { fillVersions(); onChoice(); });
$("version-select").addEventListener("change", onChoice);
