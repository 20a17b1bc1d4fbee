// The Slides page: list the precomputed slides, show a slide's heatmap for a typed prompt and
// its top patches. Plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { slide: null, request: 0 };  // request: only the latest answer is shown

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  const res = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    throw new Error((data && data.error && data.error.message) || res.status + " " + res.statusText);
  }
  return data;
}

function setStatus(text, isError) {
  const el = $("slide-status");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

async function loadSlides() {
  try {
    const data = await api("/v1/slides");
    const list = $("slide-list");
    list.replaceChildren();
    for (const s of data.slides) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.id = s.id;
      b.setAttribute("aria-pressed", "false");
      b.textContent = s.id;
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = s.patches + " patches" + (s.image ? "" : " · no slide file");
      b.append(n);
      b.addEventListener("click", () => select(s.id));
      li.append(b);
      list.append(li);
    }
    $("slides-info").textContent = data.slides.length + (data.slides.length === 1 ? " slide" : " slides");
    if (data.slides.length) select(data.slides[0].id);
  } catch (e) {
    $("slides-info").textContent = "no slides";
    setStatus(e.message, true);
  }
}

function select(id) {
  state.slide = id;
  for (const b of document.querySelectorAll("#slide-list button")) {
    b.setAttribute("aria-pressed", b.dataset.id === id ? "true" : "false");
  }
  show();
}

async function show() {
  if (!state.slide) return;
  const text = $("prompt").value.trim();
  if (!text) { setStatus("Type a prompt first.", true); return; }
  setStatus("Scoring " + state.slide + "…");
  const mine = ++state.request;
  try {
    const topK = Math.max(0, Math.min(50, parseInt($("top-k").value, 10) || 0));
    const r = await api("/v1/slides/" + encodeURIComponent(state.slide) + "/heatmap",
                        { text, top_k: topK });
    if (mine !== state.request) return;  // a newer request was made meanwhile
    const img = $("slide-heatmap");
    img.src = r.heatmap;
    img.alt = "Heatmap of " + r.id + " for \u201c" + r.text + "\u201d";
    img.hidden = false;
    $("slide-caption").textContent = r.id + ": cosine similarity to \u201c" + r.text + "\u201d, "
      + r.min.toFixed(3) + " (blue) to " + r.max.toFixed(3) + " (red), " + r.patches + " patches";
    const ol = $("top-patches");
    ol.replaceChildren();
    for (const p of r.top_patches) {
      const li = document.createElement("li");
      if (p.image) {
        const im = document.createElement("img");
        im.src = p.image;
        im.alt = "patch at x " + p.x + ", y " + p.y;
        li.append(im);
      }
      const s = document.createElement("div");
      s.className = "score";
      s.textContent = p.score.toFixed(4);
      const c = document.createElement("div");
      c.className = "muted";
      c.textContent = "x " + p.x + ", y " + p.y;
      li.append(s, c);
      ol.append(li);
    }
    setStatus("Done: " + r.id + ".");
  } catch (e) {
    if (mine === state.request) setStatus(e.message, true);
  }
}

$("prompt-form").addEventListener("submit", (e) => { e.preventDefault(); show(); });
$("api-key").addEventListener("change", loadSlides);  // a server with --api-key: list again
loadSlides();
