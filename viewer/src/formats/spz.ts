/**
 * Niantic `.spz`, versions 1-3 (a gzip stream) and 4 (plain header, table of
 * contents, one zstd stream per attribute), decoded as compgs/io/spz.py decodes
 * them, including the turn from SPZ's RUB axes to RDF (x right, y down, z
 * forward) that every reader here returns. Inflation is bounded by the sizes the
 * header implies.
 */
import { CorruptFileError, UnsupportedFormatError } from "./errors";
import { type Gaussians, nonFiniteMessage, numRestCoeffs } from "./gaussians";
import { float16s, U8_TO_LOGIT } from "./numbers";
import { inflateZstd } from "./zstd";

const MAGIC = 0x5053474e; // "NGSP" little-endian
const HEADER_BYTES = 16;
const HEADER_V4_BYTES = 32;
const COLOR_SCALE = 0.15;
const SQRT1_2 = 1.0 / Math.sqrt(2.0);
const FLIP_P = [1, -1, -1];
const FLIP_SH = [-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1];
// For "smallest three": the (xyzw) indices stored when index L is the largest.
const OTHERS = [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]];

interface Header {
  version: number;
  n: number;
  shDegree: number;
  fractionalBits: number;
}

export function isSpz(head: Uint8Array): boolean {
  return (head[0] === 0x1f && head[1] === 0x8b) || String.fromCharCode(...head.subarray(0, 4)) === "NGSP";
}

function sectionSizes(h: Header): [string, number][] {
  const n = h.n;
  return [
    ["positions", n * 3 * (h.version === 1 ? 2 : 3)],
    ["alphas", n],
    ["colors", n * 3],
    ["scales", n * 3],
    ["rotations", n * (h.version >= 3 ? 4 : 3)],
    ["sh", n * (numRestCoeffs(h.shDegree) ?? 0) * 3],
  ];
}

function checkHeader(path: string, h: Header): void {
  if (h.version < 1 || h.version > 4) {
    throw new UnsupportedFormatError(`${path}: SPZ version ${h.version} is not supported (1-4)`);
  }
  if (h.shDegree > 3) throw new CorruptFileError(`${path}: SPZ header declares SH degree ${h.shDegree} (max 3)`);
  if (h.fractionalBits > 23) {
    throw new CorruptFileError(`${path}: SPZ header declares ${h.fractionalBits} fractional bits`);
  }
}

function readHeader(view: DataView): Header {
  return {
    version: view.getUint32(4, true),
    n: view.getUint32(8, true),
    shDegree: view.getUint8(12),
    fractionalBits: view.getUint8(13),
  };
}

/** Inflate a gzip stream, but never beyond ``limit`` bytes (a bomb cannot grow us). */
async function gunzipAtMost(data: Uint8Array, limit: () => number): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream("gzip"));
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < limit()) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

async function inflateGzip(path: string, data: Uint8Array): Promise<[Header, Uint8Array]> {
  let header: Header | null = null;
  let expected = 0;
  let body: Uint8Array;
  try {
    // The limit grows once the header is known: 16 bytes first, then header + body.
    body = await gunzipAtMost(data, () => HEADER_BYTES + expected);
  } catch (e) {
    throw new CorruptFileError(`${path}: SPZ gzip stream is corrupt: ${(e as Error).message}`);
  }
  if (body.length < HEADER_BYTES) throw new CorruptFileError(`${path}: SPZ stream ends inside its 16-byte header`);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const magic = view.getUint32(0, true);
  if (magic !== MAGIC) {
    throw new CorruptFileError(`${path}: not an SPZ file (wrong magic 0x${magic.toString(16).padStart(8, "0")})`);
  }
  header = readHeader(view);
  checkHeader(path, header);
  if (header.version === 4) throw new CorruptFileError(`${path}: SPZ version 4 must not be gzip-wrapped`);
  expected = sectionSizes(header).reduce((sum, [, size]) => sum + size, 0);
  if (body.length < HEADER_BYTES + expected) {
    // The first pass stopped early (it did not know the size yet): inflate again with the bound.
    try {
      body = await gunzipAtMost(data, () => HEADER_BYTES + expected);
    } catch (e) {
      throw new CorruptFileError(`${path}: SPZ gzip stream is corrupt: ${(e as Error).message}`);
    }
  }
  if (body.length < HEADER_BYTES + expected) {
    throw new CorruptFileError(
      `${path}: SPZ header declares ${header.n} Gaussians (${expected} bytes) ` +
        `but the stream holds only ${body.length - HEADER_BYTES} bytes`,
    );
  }
  return [header, body.subarray(HEADER_BYTES, HEADER_BYTES + expected)];
}

function inflateV4(path: string, data: Uint8Array): [Header, Uint8Array] {
  if (data.length < HEADER_V4_BYTES) throw new CorruptFileError(`${path}: SPZ file ends inside its 32-byte header`);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const header = readHeader(view);
  checkHeader(path, header);
  if (header.version !== 4) {
    throw new CorruptFileError(`${path}: uncompressed SPZ header with version ${header.version} (not 4)`);
  }
  const numStreams = view.getUint8(15);
  const toc = view.getUint32(16, true);
  const sections = sectionSizes(header).filter(([, size]) => size);
  if (numStreams !== sections.length) {
    throw new CorruptFileError(
      `${path}: SPZ declares ${numStreams} streams, ${sections.length} expected for ${header.n} Gaussians`,
    );
  }
  if (toc < HEADER_V4_BYTES || toc + numStreams * 16 > data.length) {
    throw new CorruptFileError(`${path}: SPZ table of contents lies outside the file`);
  }
  let offset = toc + numStreams * 16;
  const body = new Uint8Array(sections.reduce((sum, [, size]) => sum + size, 0));
  let at = 0;
  sections.forEach(([name, size], i) => {
    const packed = Number(view.getBigUint64(toc + 16 * i, true));
    const unpacked = Number(view.getBigUint64(toc + 16 * i + 8, true));
    if (unpacked !== size || offset + packed > data.length) {
      throw new CorruptFileError(`${path}: SPZ stream '${name}' has a bad size or lies outside`);
    }
    try {
      body.set(inflateZstd(data.subarray(offset, offset + packed), size), at);
    } catch (e) {
      throw new CorruptFileError(`${path}: SPZ stream '${name}' is corrupt: ${(e as Error).message}`);
    }
    at += size;
    offset += packed;
  });
  return [header, body];
}

export async function readSpz(data: Uint8Array, path = "<bytes>"): Promise<Gaussians> {
  const isV4 = String.fromCharCode(...data.subarray(0, 4)) === "NGSP";
  const [h, body] = isV4 ? inflateV4(path, data) : await inflateGzip(path, data);
  const parts: Record<string, Uint8Array> = {};
  let offset = 0;
  for (const [name, size] of sectionSizes(h)) {
    parts[name] = body.subarray(offset, offset + size);
    offset += size;
  }
  const n = h.n;
  const k = numRestCoeffs(h.shDegree) ?? 0;
  const g: Gaussians = {
    count: n,
    shDegree: h.shDegree,
    means: new Float32Array(3 * n),
    quats: new Float32Array(4 * n),
    scales: new Float32Array(3 * n),
    opacities: new Float32Array(n),
    sh0: new Float32Array(3 * n),
    shN: new Float32Array(3 * n * k),
  };
  const halves = h.version === 1 ? float16s(parts.positions) : null;
  const p = parts.positions;
  for (let i = 0; i < 3 * n; i++) {
    let value: number;
    if (halves) value = halves[i];
    else {
      let fixed = p[3 * i] | (p[3 * i + 1] << 8) | (p[3 * i + 2] << 16);
      if (fixed & 0x800000) fixed -= 1 << 24;
      value = fixed / 2 ** h.fractionalBits;
    }
    g.means[i] = value * FLIP_P[i % 3];
  }
  const rotations = parts.rotations;
  const q = [0, 0, 0, 0]; // xyzw
  for (let i = 0; i < n; i++) {
    if (h.version >= 3) {
      const comp =
        (rotations[4 * i] | (rotations[4 * i + 1] << 8) | (rotations[4 * i + 2] << 16) | (rotations[4 * i + 3] << 24)) >>>
        0;
      const largest = comp >>> 30;
      let sumSq = 0;
      for (let j = 0; j < 3; j++) {
        const field = (comp >>> (10 * (2 - j))) & 0x3ff;
        let v = (SQRT1_2 * (field & 0x1ff)) / 511.0;
        if ((field >> 9) & 1) v = -v;
        q[OTHERS[largest][j]] = v;
        sumSq += v * v;
      }
      q[largest] = Math.sqrt(Math.max(0, 1 - sumSq));
    } else {
      let sumSq = 0;
      for (let j = 0; j < 3; j++) {
        q[j] = rotations[3 * i + j] / 127.5 - 1.0;
        sumSq += q[j] * q[j];
      }
      q[3] = Math.sqrt(Math.max(0, 1 - sumSq));
    }
    // xyzw -> wxyz, with y and z flipped (RUB -> RDF)
    g.quats.set([q[3], q[0], -q[1], -q[2]], 4 * i);
    g.opacities[i] = U8_TO_LOGIT[parts.alphas[i]];
    for (let j = 0; j < 3; j++) {
      g.scales[3 * i + j] = parts.scales[3 * i + j] / 16 - 10;
      g.sh0[3 * i + j] = (parts.colors[3 * i + j] / 255 - 0.5) / COLOR_SCALE;
    }
    for (let c = 0; c < k; c++) {
      for (let ch = 0; ch < 3; ch++) {
        const at = (i * k + c) * 3 + ch;
        g.shN[at] = ((parts.sh[at] - 128) / 128) * FLIP_SH[c];
      }
    }
  }
  const bad = nonFiniteMessage(g);
  if (bad) throw new CorruptFileError(`${path}: ${bad}`);
  return g;
}
