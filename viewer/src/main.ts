/**
 * The viewer page: takes a file from ?file=URL, the page's compgs-file meta tag
 * (set by `compgs view` / `compgs export`), drag-and-drop or the file picker;
 * decodes it here in the browser; shows it and its numbers; and reports a
 * corrupt or unsupported file in one clear message.
 *
 * `window.compgs` exposes the state and a few hooks for automated tests.
 */
import { type Decoded, decodeFile, type FormatName, type Summary, summarize, summarizeError } from "./formats/load";
import { type OpenCvCamera, SplatView } from "./viewer";

type Status = "idle" | "loading" | "ready" | "error";

interface State {
  status: Status;
  message: string;
  file: string;
  bytes: number;
  summary: Summary | null;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
if (params.get("hud") === "0") document.body.classList.add("nohud");

const view = new SplatView($("view"));
const state: State = { status: "idle", message: "", file: "", bytes: 0, summary: null };
let current: Decoded | null = null;

function showMessage(text: string, isError: boolean): void {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

function setStat(id: string, text: string): void {
  $(`stat-${id}`).textContent = text;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(2)} MiB`;
}

async function open(data: Uint8Array, name: string): Promise<void> {
  state.status = "loading";
  state.file = name;
  state.bytes = data.length;
  showMessage(`decoding ${name} ...`, false);
  setStat("file", name);
  setStat("size", formatBytes(data.length));
  try {
    const decoded = await decodeFile(data, name);
    current = decoded;
    state.summary = summarize(decoded);
    const g = decoded.gaussians;
    setStat("count", g.count.toLocaleString("en-US"));
    setStat("bits", g.count ? ((8 * data.length) / g.count).toFixed(2) : "-");
    setStat("sh", String(g.shDegree));
    setStat("decode", `${decoded.decodeMs.toFixed(1)} ms`);
    await view.show(g);
    showMessage("", false);
    state.status = "ready";
  } catch (error) {
    current = null;
    state.summary = summarizeError(error);
    state.status = "error";
    state.message = state.summary.error ?? "unknown error";
    for (const id of ["count", "bits", "sh", "decode"]) setStat(id, "-");
    showMessage(`${state.summary.errorType}: ${state.message}`, true);
    console.error(error);
  }
}

async function openUrl(url: string): Promise<void> {
  const name = decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
  state.status = "loading";
  showMessage(`downloading ${name} ...`, false);
  let data: Uint8Array;
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    data = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    state.status = "error";
    state.message = `${name}: cannot download: ${(error as Error).message}`;
    state.summary = { ok: false, error: state.message, errorType: "DownloadError" };
    showMessage(state.message, true);
    return;
  }
  await open(data, name);
}

async function openLocal(file: File): Promise<void> {
  await open(new Uint8Array(await file.arrayBuffer()), file.name);
}

// --- inputs -------------------------------------------------------------------

$<HTMLInputElement>("picker").addEventListener("change", (event) => {
  const file = (event.target as HTMLInputElement).files?.[0];
  if (file) void openLocal(file);
});

let dragDepth = 0;
window.addEventListener("dragenter", (e) => {
  e.preventDefault();
  dragDepth++;
  $("drop").hidden = false;
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $("drop").hidden = true;
});
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = e.dataTransfer?.files?.[0];
  if (file) void openLocal(file);
});

const modeButton = $<HTMLButtonElement>("mode");
function toggleMode(): void {
  view.releaseCamera();
  view.setMode(view.mode === "orbit" ? "fly" : "orbit");
  modeButton.textContent = view.mode;
}
modeButton.addEventListener("click", toggleMode);
$("reset").addEventListener("click", () => current && view.fit(current.gaussians));
window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement) return;
  if (e.key === "f" || e.key === "F") toggleMode();
  if ((e.key === "r" || e.key === "R") && current) view.fit(current.gaussians);
});

setInterval(() => {
  const ms = current ? view.frameTime() : 0;
  setStat("frame", ms ? `${ms.toFixed(1)} ms (${(1000 / ms).toFixed(0)} fps)` : "-");
}, 500);

// --- hooks for tests and scripts -------------------------------------------------

declare global {
  interface Window {
    compgs: {
      state: State;
      frames: () => number;
      /** Camera position and orientation (three.js world, y up) and orbit target. */
      pose: () => { position: number[]; quaternion: number[]; target: number[] };
      setCamera: (camera: OpenCvCamera) => void;
      /** Decode bytes (base64) without showing them (format detected unless given). */
      decodeBase64: (base64: string, name: string, format?: FormatName) => Promise<Summary>;
      openUrl: (url: string) => Promise<void>;
    };
  }
}

window.compgs = {
  state,
  frames: () => view.frames,
  pose: () => view.pose(),
  setCamera: (camera) => view.setCamera(camera),
  decodeBase64: async (base64, name, format) => {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    try {
      return summarize(await decodeFile(bytes, name, format));
    } catch (error) {
      return summarizeError(error);
    }
  },
  openUrl,
};

const initial = params.get("file") || document.querySelector<HTMLMetaElement>('meta[name="compgs-file"]')?.content;
if (initial) void openUrl(initial);
else showMessage("Drop a .cgs, .ply, .splat or .spz file here, or use “open file”.", false);
