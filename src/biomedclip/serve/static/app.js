// BiomedCLIP browser app: Classify (probability bars + heatmap) and Search (thumbnail grid).
// Plain JavaScript, no build step, no network beyond this server.
"use strict";

// The three widget examples of the model card (title -> candidate labels).
const CARD_EXAMPLES = [
  ["squamous cell carcinoma histopathology",
   ["adenocarcinoma histopathology", "squamous cell carcinoma histopathology"]],
  ["adenocarcinoma histopathology",
   ["adenocarcinoma histopathology", "squamous cell carcinoma histopathology"]],
  ["left-sided pleural effusion chest x-ray",
   ["left-sided pleural effusion chest x-ray", "right-sided pleural effusion chest x-ray",
    "normal chest x-ray"]],
];

const $ = (id) => document.getElementById(id);
const state = { classifyImage: null, classifyName: "" };

function apiKey() {
  return $("api-key").value.trim();
}

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
  const res = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = (data && data.error && data.error.message) || res.status + " " + res.statusText;
    const retry = res.headers.get("Retry-After");
    throw new Error(msg + (retry ? " (retry in " + retry + " s)" : ""));
  }
  return data;
}

function setStatus(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(new Error("cannot read " + file.name));
    r.readAsDataURL(file);
  });
}

// ---- tabs -------------------------------------------------------------------------------------
const TABS = ["classify", "search"];
function showTab(name, focus) {
  for (const t of TABS) {
    const tab = $("tab-" + t), on = t === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $("page-" + t).hidden = !on;
    if (on && focus) tab.focus();
  }
  history.replaceState(null, "", "#" + name);
}
for (const t of TABS) {
  $("tab-" + t).addEventListener("click", () => showTab(t));
  $("tab-" + t).addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const i = (TABS.indexOf(t) + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length;
      showTab(TABS[i], true);
    }
  });
}

// ---- drop zones -------------------------------------------------------------------------------
function dropZone(zoneId, inputId, onFile) {
  const zone = $(zoneId), input = $(inputId);
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => { if (input.files.length) onFile(input.files[0]); });
}

// ---- classify ---------------------------------------------------------------------------------
function labels() {
  return $("labels").value.split(/\n|,/).map((s) => s.trim()).filter((s) => s);
}

function renderBars(probs) {
  const ol = $("bars");
  ol.textContent = "";
  for (const { label, probability } of probs) {
    const li = document.createElement("li");
    const pct = (100 * probability).toFixed(1) + "%";
    li.innerHTML = '<div class="label"><span></span><span class="pct"></span></div>' +
      '<div class="track" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="fill"></div></div>';
    li.querySelector(".label span").textContent = label;
    li.querySelector(".pct").textContent = pct;
    const track = li.querySelector(".track");
    track.setAttribute("aria-valuenow", (100 * probability).toFixed(1));
    track.setAttribute("aria-label", label);
    li.querySelector(".fill").style.width = Math.max(0.5, 100 * probability) + "%";
    ol.appendChild(li);
  }
}

async function classify() {
  if (!state.classifyImage) { setStatus("classify-status", "Choose an image first.", true); return; }
  const ls = labels();
  if (!ls.length) { setStatus("classify-status", "Type at least one label.", true); return; }
  const btn = $("classify-btn");
  btn.disabled = true;
  setStatus("classify-status", "Classifying…");
  try {
    const res = await api("/v1/classify", { image: state.classifyImage, labels: ls });
    renderBars(res.probabilities);
    const top = res.probabilities[0].label;
    setStatus("classify-status", "Computing the heatmap of “" + top + "”…");
    const method = $("method").value;
    const ex = await api("/v1/explain", { image: state.classifyImage, text: top, method });
    const img = $("heatmap");
    img.src = ex.png;
    img.alt = method + " heatmap of “" + top + "” over the model's view of the image";
    img.hidden = false;
    $("heatmap-caption").textContent = "Heatmap (" + method + "): " + top;
    setStatus("classify-status", "Done. Top label: " + top + ".");
  } catch (e) {
    setStatus("classify-status", e.message, true);
  } finally {
    btn.disabled = false;
  }
}

dropZone("drop-classify", "file-classify", async (file) => {
  state.classifyImage = await readFile(file);
  state.classifyName = file.name;
  const img = $("preview");
  img.hidden = false;
  img.alt = "the chosen image " + file.name;
  img.onerror = () => { img.hidden = true; };  // DICOM/NIfTI: browsers cannot show them
  img.src = state.classifyImage;
  $("preview-name").textContent = file.name;
  $("heatmap").hidden = true;
  $("heatmap-caption").textContent = "";
  $("bars").textContent = "";
  setStatus("classify-status", "Image ready: press Classify.");
});
$("classify-btn").addEventListener("click", classify);

(function presets() {
  const box = document.querySelector(".presets");
  for (const [title, ls] of CARD_EXAMPLES) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = title;
    b.title = "labels: " + ls.join(", ");
    b.addEventListener("click", () => { $("labels").value = ls.join("\n"); });
    box.appendChild(b);
  }
  $("labels").value = CARD_EXAMPLES.map(([title]) => title).join("\n");
})();

// ---- search -----------------------------------------------------------------------------------
// the server signs thumbnail URLs (short-lived) when it has an API key: the key never goes
// into a URL
function thumbURL(hit) {
  return hit.thumbnail || "/v1/items/" + hit.row + "/thumbnail";
}

function renderHits(hits) {
  const ul = $("results");
  ul.textContent = "";
  for (const h of hits) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    if (h.has_image) {
      const img = document.createElement("img");
      img.src = thumbURL(h);
      img.alt = h.caption || h.id;
      img.loading = "lazy";
      b.appendChild(img);
      b.title = "search by this image";
      b.addEventListener("click", () => search({ item: h.row }, "image of " + h.id));
    } else {
      const d = document.createElement("div");
      d.className = "textonly";
      d.textContent = h.caption ? "“" + h.caption + "”" : "(text)";
      b.appendChild(d);
      b.disabled = true;
      b.title = "a text row";
    }
    const meta = document.createElement("div");
    meta.innerHTML = '<span class="score"></span> · <span class="id muted"></span>';
    meta.querySelector(".score").textContent = "#" + h.rank + "  " + h.score.toFixed(3);
    meta.querySelector(".id").textContent = h.id;
    b.appendChild(meta);
    if (h.caption && h.has_image) {
      const c = document.createElement("div");
      c.className = "caption";
      c.textContent = h.caption;
      b.appendChild(c);
    }
    li.appendChild(b);
    ul.appendChild(li);
  }
}

async function search(query, what) {
  const body = Object.assign({ top_k: Number($("topk").value) || 12 }, query);
  if ($("modality").value) body.modality = $("modality").value;
  setStatus("search-status", "Searching " + what + "…");
  try {
    const res = await api("/v1/search", body);
    renderHits(res.hits);
    setStatus("search-status", res.hits.length + " results for " + what + ".");
  } catch (e) {
    setStatus("search-status", e.message, true);
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("query").value.trim();
  if (q) search({ text: q }, "“" + q + "”");
});
dropZone("drop-search", "file-search", async (file) => {
  search({ image: await readFile(file) }, "image " + file.name);
});

// ---- start ------------------------------------------------------------------------------------
(async function start() {
  showTab(location.hash === "#search" ? "search" : "classify");
  try {
    const m = (await api("/v1/models")).data[0];
    const b = m.backend;
    const run = b ? " · " + b.label + (b.min_cosine != null ? " (cos " + b.min_cosine + ")" : "") +
      " on " + b.cpu.kind : "";
    $("model-info").textContent = m.id + " · " + m.dimensions + "-d" +
      (m.index_size != null ? " · index of " + m.index_size : " · no index") + run;
  } catch (e) {
    $("model-info").textContent = e.message;
  }
})();

// ---- the Slides page link (shown when the server was started with --slides DIR) --------------
fetch("/slides", { method: "HEAD" })
  .then((r) => { if (r.ok) $("nav-slides").hidden = false; })
  .catch(() => {});
