// Rotoscope studio's pages, enhanced: uploads, jobs with live progress, the compare viewer.
// Plain JavaScript, vendored with the package (no CDN), loaded as a file (the CSP allows no inline script).
"use strict";

const byId = (id) => document.getElementById(id);

async function call(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return response;
}

const getJSON = async (url) => (await call(url)).json();

const postJSON = async (url, body) => (await call(url, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
})).json();

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "?";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(s % 60).padStart(2, "0")}`;
}

function progressText(event) {
  const of = event.total != null ? `/${event.total}` : "";
  const rate = event.rate ? `, ${event.rate.toFixed(1)} ${event.unit}/s` : "";
  const left = event.seconds_left != null ? `, ${clock(event.seconds_left)} left` : "";
  const note = event.note ? ` ${event.note}` : "";
  return `${event.task}: ${event.done}${of} ${event.unit}${rate}${left}${note}`;
}

// -- jobs -------------------------------------------------------------------------------------------

function followJob(id, onProgress, onState) {
  const source = new EventSource(`/api/jobs/${id}/events`);
  source.addEventListener("progress", (e) => onProgress(JSON.parse(e.data)));
  source.addEventListener("state", (e) => { source.close(); onState(JSON.parse(e.data)); });
  return source;
}

async function startJob(verb, args = {}) {
  return postJSON("/api/jobs", { verb, args });
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.job = job.id;
  row.dataset.state = job.state;
  for (const name of ["id", "verb", "state", "progress", "started", "actions"]) {
    const cell = document.createElement("td");
    cell.className = name;
    row.append(cell);
  }
  row.cells[0].textContent = job.id;
  row.cells[1].textContent = job.verb;
  row.cells[2].textContent = job.state;
  row.cells[4].textContent = job.started || job.created;
  return row;
}

function watchRow(row) {
  const id = row.dataset.job;
  followJob(id, (event) => {
    row.dataset.state = "running";
    row.querySelector(".state").textContent = "running";
    row.querySelector(".progress").textContent = progressText(event);
  }, (job) => {
    row.dataset.state = job.state;
    row.querySelector(".state").textContent = job.state + (job.message ? `: ${job.message}` : "");
    const cancel = row.querySelector(".cancel-job");
    if (cancel) cancel.remove();
  });
}

function jobsPage() {
  const table = byId("jobs");
  table.querySelectorAll("tbody tr[data-job]").forEach((row) => {
    if (["queued", "running"].includes(row.dataset.state)) watchRow(row);
  });
  table.addEventListener("click", async (e) => {
    const row = e.target.closest("tr[data-job]");
    if (!row) return;
    try {
      if (e.target.classList.contains("cancel-job")) await call(`/api/jobs/${row.dataset.job}/cancel`, { method: "POST" });
      if (e.target.classList.contains("rerun-job")) {
        const job = await (await call(`/api/jobs/${row.dataset.job}/rerun`, { method: "POST" })).json();
        addRow(job);
      }
    } catch (error) { byId("start-job-message").textContent = error.message; }
  });
  const addRow = (job) => {
    const row = jobRow(job);
    table.querySelector("tbody .empty")?.remove();
    table.tBodies[0].prepend(row);
    watchRow(row);
  };
  byId("start-job").addEventListener("submit", async (e) => {
    e.preventDefault();
    const message = byId("start-job-message");
    try {
      addRow(await startJob(new FormData(e.target).get("verb")));
      message.textContent = "";
    } catch (error) { message.textContent = error.message; message.classList.add("error"); }
  });
}

function rendersPage() {
  document.querySelectorAll(".start-job").forEach((button) => {
    button.addEventListener("click", async () => {
      const status = byId("repro-progress");
      button.disabled = true;
      try {
        const job = await startJob(button.dataset.verb);
        status.textContent = `${job.verb} queued`;
        followJob(job.id, (event) => { status.textContent = progressText(event); }, (done) => {
          status.dataset.state = done.state;
          if (done.state === "done") { status.textContent = "done: reloading"; window.location.reload(); return; }
          status.textContent = `${done.state}: ${done.message || ""}`;
          button.disabled = false;
        });
      } catch (error) {
        status.textContent = error.message;
        button.disabled = false;
      }
    });
  });
}

// -- uploads ------------------------------------------------------------------------------------------

function uploadForms() {
  document.querySelectorAll("form[data-upload]").forEach((form) => {
    const message = form.querySelector(".message");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const file = data.get("file");
      const query = new URLSearchParams({ filename: file.name });
      for (const [key, value] of data) if (key !== "file" && value) query.set(key, value);
      message.classList.remove("error");
      message.textContent = `uploading ${file.name}…`;
      try {
        await call(`${form.dataset.upload}?${query}`, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
        message.textContent = "made: reloading";
        window.location.reload();
      } catch (error) {
        message.textContent = error.message;
        message.classList.add("error");
      }
    });
  });
}

// -- compare ----------------------------------------------------------------------------------------

class FrameCache {
  constructor() { this.pictures = new Map(); }
  load(md5) {
    if (!this.pictures.has(md5)) {
      const picture = new Image();
      picture.src = `/api/blobs/${md5}`;
      this.pictures.set(md5, picture.decode().then(() => picture, () => {
        this.pictures.delete(md5);
        throw new Error(`frame ${md5} is not in the cache (fetch it from the remote)`);
      }));
      if (this.pictures.size > 400) this.pictures.delete(this.pictures.keys().next().value);
    }
    return this.pictures.get(md5);
  }
}

function comparePage() {
  const root = byId("compare");
  const { video, render, a, b } = root.dataset;
  const message = byId("compare-message");
  if (!video) { message.textContent = "no video to compare yet"; return; }
  const viewer = byId("viewer"), scrub = byId("scrub"), mix = byId("mix");
  const frameA = byId("frame-a"), frameB = byId("frame-b"), label = byId("frame-label");
  const cache = new FrameCache();
  const timings = (window.rotoscopeTimings = []);
  const state = { a: null, b: null, index: 0, mode: "side", playing: false, shown: -1, quality: [null, null] };
  const revQuery = (rev) => (rev ? `?rev=${encodeURIComponent(rev)}` : "");

  const frameOf = (manifest, index) => manifest.frames[Math.min(index, manifest.frames.length - 1)];

  async function show(index, started = performance.now()) {
    state.index = index;
    const [fa, fb] = [frameOf(state.a, index), frameOf(state.b, index)];
    let pictures;
    try {
      pictures = await Promise.all([cache.load(fa.md5), cache.load(fb.md5)]);
    } catch (error) { message.textContent = error.message; offerFetch(); return; }
    if (state.index !== index) return; // a later step overtook this one
    frameA.src = pictures[0].src;
    frameB.src = pictures[1].src;
    await Promise.all([frameA.decode(), frameB.decode()]).catch(() => {});
    scrub.value = index;
    label.textContent = `frame ${index} · ${fa.time.toFixed(3)} s`;
    root.dataset.frame = index;
    frameA.dataset.md5 = fa.md5;
    frameB.dataset.md5 = fb.md5;
    if (state.mode === "difference") drawDifference(pictures[0], pictures[1]);
    drawStrip();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      timings.push(performance.now() - started);
      root.dataset.steps = timings.length;
    }));
    for (let ahead = 1; ahead <= 6; ahead++) {
      const next = index + ahead;
      if (next < maxFrames()) { cache.load(frameOf(state.a, next).md5).catch(() => {}); cache.load(frameOf(state.b, next).md5).catch(() => {}); }
    }
  }

  const maxFrames = () => Math.max(state.a.frames.length, state.b.frames.length);

  function offerFetch() {
    if (byId("fetch-frames")) return;
    const button = document.createElement("button");
    button.id = "fetch-frames";
    button.type = "button";
    button.textContent = "fetch these revisions' frames from the remote";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        for (const rev of [a, b].filter(Boolean)) await postJSON("/api/fetch", { video, kind: render, rev });
        button.remove();
        message.textContent = "";
        show(state.index);
      } catch (error) { message.textContent = error.message; button.disabled = false; }
    });
    message.after(button);
  }

  function setMode(mode) {
    state.mode = mode;
    viewer.className = `viewer mode-${mode}`;
    root.querySelectorAll("[data-mode]").forEach((button) => button.setAttribute("aria-pressed", String(button.dataset.mode === mode)));
    byId("difference").hidden = mode !== "difference";
    applyMix();
    show(state.index);
  }

  function applyMix() {
    const side = root.querySelector(".side-b");
    side.style.clipPath = state.mode === "swipe" ? `inset(0 0 0 ${mix.value}%)` : "";
    side.style.opacity = state.mode === "fade" ? String(mix.value / 100) : "";
  }

  function drawDifference(pictureA, pictureB) {
    const canvas = byId("difference");
    const width = pictureA.naturalWidth, height = pictureA.naturalHeight;
    canvas.width = width; canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(pictureA, 0, 0, width, height);
    const one = context.getImageData(0, 0, width, height);
    context.drawImage(pictureB, 0, 0, width, height);
    const two = context.getImageData(0, 0, width, height);
    const out = context.createImageData(width, height);
    for (let p = 0; p < one.data.length; p += 4) {
      const d = (Math.abs(one.data[p] - two.data[p]) + Math.abs(one.data[p + 1] - two.data[p + 1]) + Math.abs(one.data[p + 2] - two.data[p + 2])) / 3;
      const v = Math.min(255, d * 4); // a heat map: black, red, yellow, white
      out.data[p] = Math.min(255, v * 3); out.data[p + 1] = Math.max(0, Math.min(255, v * 3 - 255)); out.data[p + 2] = Math.max(0, v * 3 - 510); out.data[p + 3] = 255;
    }
    context.putImageData(out, 0, 0);
  }

  function drawStrip() {
    const canvas = byId("strip");
    const width = (canvas.width = canvas.clientWidth || 800), height = canvas.height;
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const count = maxFrames();
    const values = state.quality.flatMap((q) => (q ? q.warping_error.filter((v) => v != null) : []));
    const top = Math.max(...values, 1e-9);
    state.quality.forEach((quality, row) => {
      if (!quality) return;
      context.fillStyle = row === 0 ? "#2b6cb0" : "#b5542b";
      quality.warping_error.forEach((value, i) => {
        if (value == null) return;
        const h = (value / top) * (height / 2 - 2);
        const x = (i / count) * width;
        context.fillRect(x, row === 0 ? height / 2 - h : height / 2, Math.max(1, width / count), h);
      });
    });
    context.fillStyle = "#000";
    context.fillRect((state.index / count) * width, 0, 2, height);
  }

  function step(by, started) {
    const next = Math.max(0, Math.min(maxFrames() - 1, state.index + by));
    if (next !== state.index) show(next, started);
  }

  async function play() {
    state.playing = !state.playing;
    byId("play").textContent = state.playing ? "pause" : "play";
    const fps = Math.min(state.a.fps || 25, 30);
    while (state.playing) {
      const tick = performance.now();
      if (state.index >= maxFrames() - 1) { state.playing = false; break; }
      await show(state.index + 1, tick);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 / fps - (performance.now() - tick))));
    }
    root.dataset.played = "true";
    byId("play").textContent = "play";
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input:not([type=range]), select, textarea")) return;
    const started = performance.now();
    const keys = { ArrowRight: 1, ArrowLeft: -1 };
    if (e.key in keys) { e.preventDefault(); step(keys[e.key] * (e.shiftKey ? 10 : 1), started); }
    else if (e.key === "Home") { e.preventDefault(); show(0, started); }
    else if (e.key === "End") { e.preventDefault(); show(maxFrames() - 1, started); }
    else if (e.key === " ") { e.preventDefault(); play(); }
    else if (["1", "2", "3", "4"].includes(e.key)) setMode(["side", "swipe", "fade", "difference"][Number(e.key) - 1]);
  });
  scrub.addEventListener("input", () => show(Number(scrub.value)));
  mix.addEventListener("input", applyMix);
  viewer.addEventListener("pointermove", (e) => {
    if (state.mode !== "swipe" || !(e.buttons & 1)) return;
    const box = viewer.getBoundingClientRect();
    mix.value = String(Math.round(((e.clientX - box.left) / box.width) * 100));
    applyMix();
  });
  root.querySelectorAll("[data-mode]").forEach((button) => button.addEventListener("click", () => setMode(button.dataset.mode)));
  byId("play").addEventListener("click", play);
  byId("strip").addEventListener("click", (e) => {
    const box = e.target.getBoundingClientRect();
    show(Math.floor(((e.clientX - box.left) / box.width) * maxFrames()));
  });
  byId("render-choice").addEventListener("change", (e) => {
    byId("video-choice").value = e.target.selectedOptions[0].dataset.video;
  });

  (async () => {
    try {
      [state.a, state.b] = await Promise.all([
        getJSON(`/api/manifests/${video}/${render}${revQuery(a)}`),
        getJSON(`/api/manifests/${video}/${render}${revQuery(b)}`),
      ]);
    } catch (error) { message.textContent = error.message; return; }
    byId("caption-a").textContent = `A: ${a || "work tree"}`;
    byId("caption-b").textContent = `B: ${b || "work tree"}`;
    scrub.max = String(maxFrames() - 1);
    state.quality = await Promise.all([a, b].map((rev) => getJSON(`/api/quality/${video}/${render}${revQuery(rev)}`).catch(() => null)));
    const wanted = Number((window.location.hash.match(/frame=(\d+)/) || [])[1] || 0);
    await show(Math.min(wanted, maxFrames() - 1));
    root.dataset.ready = "true";
  })();
}

// -- every page -----------------------------------------------------------------------------------------

function countImages() {
  // lets a headless browser (and a test) tell that every picture decoded
  const pictures = [...document.images];
  document.body.dataset.images = pictures.length;
  document.body.dataset.imagesLoaded = pictures.filter((p) => p.complete && p.naturalWidth > 0).length;
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  uploadForms();
  if (page === "jobs") jobsPage();
  if (page === "renders") rendersPage();
  if (page === "compare") comparePage();
  window.addEventListener("load", countImages);
});
