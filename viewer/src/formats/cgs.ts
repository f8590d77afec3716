/**
 * The `.cgs` reader: an independent implementation of docs/format.md (the Python
 * reference lives in compgs/codec/). It validates in the order the format asks
 * for (magic and version, table bounds and header CRC, every entry's bounds, the
 * metadata, the decoded size of every section from N and the metadata) before it
 * decodes any payload, and every failure names the section, worded like the
 * Python reader: "<file>: section '<name>': <what>".
 */
import { bitsFor, packedSize, unpackBits } from "./bitpack";
import { crc32 } from "./crc32";
import { CorruptFileError } from "./errors";
import { type Field, FIELDS, fieldWidths, type Gaussians, numRestCoeffs } from "./gaussians";
import { floats, U8_TO_LOGIT, uint16s } from "./numbers";
import { inflateZstd } from "./zstd";

export const MAGIC = [0x89, 0x43, 0x47, 0x53, 0x0d, 0x0a, 0x1a, 0x0a];
export const VERSION = 1;
const HEADER_SIZE = 32;
const ENTRY_SIZE = 56;
const MAX_SECTIONS = 64;
const MAX_META_BYTES = 1 << 24;
const FLOAT_BYTES: Record<string, number> = { f32: 4, f16: 2 };
const POSITION_BYTES: Record<string, number> = { f32: 4, f16: 2, u16: 2 };
const OPACITY_BYTES: Record<string, number> = { f32: 4, f16: 2, u8: 1 };

// Section encodings (docs/format.md): zstd, optionally of the byte-shuffled numbers.
const ENCODINGS = ["raw", "zstd", "zstd-shuffle2", "zstd-shuffle4"] as const;
type Encoding = (typeof ENCODINGS)[number];
const SHUFFLE_WIDTH: Partial<Record<Encoding, number>> = { "zstd-shuffle2": 2, "zstd-shuffle4": 4 };

export interface SectionInfo {
  name: string;
  encoding: Encoding;
  offset: number;
  stored: number;
  raw: number;
  crc32: number;
}

export interface CgsGroup {
  name: string;
  fields: Field[];
  k: number;
  dim: number;
  bits: number;
  codebook: "f32" | "f16";
  index: string;
  count_bits?: number;
}

export interface CgsMeta {
  num_gaussians: number;
  sh_degree: number;
  positions: { encoding: "f32" | "f16" | "u16"; bbox?: number[][] };
  opacities: { encoding: "f32" | "f16" | "u8" };
  groups: CgsGroup[];
  raw_fields: { field: Field; encoding: "f32" | "f16" }[];
  [key: string]: unknown;
}

export interface CgsFile {
  gaussians: Gaussians;
  meta: CgsMeta;
  table: Map<string, SectionInfo>;
  /** Decoded payload of every section, in table order. */
  sections: Map<string, Uint8Array>;
}

export function isCgs(head: Uint8Array): boolean {
  return MAGIC.every((b, i) => head[i] === b);
}

function failer(source: string) {
  return (section: string, message: string): never => {
    throw new CorruptFileError(`${source}: section '${section}': ${message}`);
  };
}

/** Python's repr of a short ASCII string, for messages worded like the reference reader. */
function repr(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function u64(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  // Past 2^53 no real file can back the number; keep it as an (inexact) huge value.
  return Number(value);
}

/** Version, N and the section table, after the header, its CRC and every bound are checked. */
export function readTable(
  data: Uint8Array,
  source = "<bytes>",
): { version: number; count: number; table: Map<string, SectionInfo> } {
  const fail = failer(source);
  if (data.length < HEADER_SIZE) {
    fail("header", `file is ${data.length} bytes, shorter than the ${HEADER_SIZE}-byte header`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  if (!isCgs(data)) fail("header", "not a .cgs file (wrong magic)");
  const version = view.getUint32(8, true);
  if (version !== VERSION) fail("header", `unsupported version ${version} (this reader knows ${VERSION})`);
  const count = u64(view, 16);
  const numSections = view.getUint32(24, true);
  if (numSections > MAX_SECTIONS) fail("header", `${numSections} sections declared (at most ${MAX_SECTIONS})`);
  const end = HEADER_SIZE + numSections * ENTRY_SIZE;
  if (data.length < end) fail("section table", `file ends inside the table of ${numSections} sections`);
  const crc = crc32(data.subarray(HEADER_SIZE, end), crc32(data.subarray(0, HEADER_SIZE - 4)));
  if (crc !== view.getUint32(28, true)) fail("header", "CRC mismatch in header or section table");

  const table = new Map<string, SectionInfo>();
  let expectedOffset = end;
  for (let i = 0; i < numSections; i++) {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    let nameEnd = 16;
    while (nameEnd > 0 && data[at + nameEnd - 1] === 0) nameEnd--;
    const nameBytes = data.subarray(at, at + nameEnd);
    if (nameBytes.some((b) => b > 127)) fail(`section #${i}`, "name is not ASCII");
    const name = String.fromCharCode(...nameBytes);
    if (!name || table.has(name)) fail(`section #${i}`, `empty or repeated name ${repr(name)}`);
    const encoding = data[at + 16];
    if (encoding >= ENCODINGS.length) fail(name, `unknown encoding ${encoding}`);
    const offset = u64(view, at + 24);
    const stored = u64(view, at + 32);
    const raw = u64(view, at + 40);
    if (offset !== expectedOffset || offset + stored > data.length) {
      fail(name, `out of bounds (offset ${offset}, ${stored} bytes, file ${data.length} bytes)`);
    }
    if (encoding === 0 && raw !== stored) fail(name, `raw section declares ${raw} bytes but stores ${stored}`);
    const width = SHUFFLE_WIDTH[ENCODINGS[encoding]] ?? 1;
    if (raw % width !== 0) fail(name, `${raw} bytes are not whole ${width}-byte elements`);
    table.set(name, {
      name,
      encoding: ENCODINGS[encoding],
      offset,
      stored,
      raw,
      crc32: view.getUint32(at + 48, true),
    });
    expectedOffset = offset + stored;
  }
  return { version, count, table };
}

/** The decoded payload of one section: CRC-checked, inflated never past its decoded length. */
export function readSection(data: Uint8Array, info: SectionInfo, source = "<bytes>"): Uint8Array {
  const fail = failer(source);
  const payload = data.subarray(info.offset, info.offset + info.stored);
  if (crc32(payload) !== info.crc32) fail(info.name, "CRC mismatch");
  if (info.encoding === "raw") return payload;
  let inflated: Uint8Array;
  try {
    inflated = inflateZstd(payload, info.raw);
  } catch (e) {
    return fail(info.name, `corrupt zstd stream: ${(e as Error).message}`);
  }
  const width = SHUFFLE_WIDTH[info.encoding];
  return width === undefined ? inflated : unshuffle(inflated, width);
}

/** Undo the byte shuffle: plane j holds byte j of every ``width``-byte number. */
function unshuffle(planes: Uint8Array, width: number): Uint8Array {
  const count = planes.length / width;
  const out = new Uint8Array(planes.length);
  for (let j = 0; j < width; j++) {
    const plane = planes.subarray(j * count, (j + 1) * count);
    for (let i = 0; i < count; i++) out[i * width + j] = plane[i];
  }
  return out;
}

/** ``key`` is one of the object's own keys (never an inherited one such as "toString"). */
function oneOf(key: unknown, table: Record<string, number>): boolean {
  return typeof key === "string" && Object.hasOwn(table, key);
}

function isInt(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value);
}

/** Parse and check the metadata block far enough to size every section. */
function parseMeta(bytes: Uint8Array, count: number, fail: ReturnType<typeof failer>): CgsMeta {
  let meta: CgsMeta;
  try {
    meta = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    const ok =
      meta !== null &&
      typeof meta === "object" &&
      isInt(meta.sh_degree) &&
      numRestCoeffs(meta.sh_degree) !== undefined &&
      Array.isArray(meta.groups) &&
      Array.isArray(meta.raw_fields) &&
      meta.num_gaussians === count &&
      typeof meta.positions === "object" &&
      meta.positions !== null &&
      oneOf(meta.positions.encoding, POSITION_BYTES) &&
      typeof meta.opacities === "object" &&
      meta.opacities !== null &&
      oneOf(meta.opacities.encoding, OPACITY_BYTES);
    if (!ok) throw new Error("inconsistent header");
  } catch (e) {
    return fail("meta", `invalid metadata (${(e as Error).message})`);
  }
  return meta;
}

/** Decoded size of every section, from N and the metadata (before any payload is touched). */
function expectedSizes(meta: CgsMeta, count: number, metaBytes: number): Map<string, number> {
  const widths = fieldWidths(meta.sh_degree);
  const width = (field: unknown): number => {
    if (typeof field !== "string" || !(FIELDS as readonly string[]).includes(field)) {
      throw new Error(`unknown field ${JSON.stringify(field)}`);
    }
    return widths[field as Field];
  };
  const expected = new Map<string, number>([
    ["meta", metaBytes],
    ["means", 3 * count * POSITION_BYTES[meta.positions.encoding]],
    ["opacities", count * OPACITY_BYTES[meta.opacities.encoding]],
  ]);
  for (const g of meta.groups) {
    if (g === null || typeof g !== "object" || typeof g.name !== "string") throw new Error("group without a name");
    const { k, dim, bits } = g;
    if (!isInt(k) || !isInt(dim) || !isInt(bits) || k < 1 || bits !== bitsFor(k) || !oneOf(g.codebook, FLOAT_BYTES)) {
      throw new Error(`group ${repr(g.name)}`);
    }
    if (!Array.isArray(g.fields) || dim !== g.fields.reduce((sum: number, f: unknown) => sum + width(f), 0)) {
      throw new Error(`group ${repr(g.name)} width`);
    }
    expected.set(`cb.${g.name}`, k * dim * FLOAT_BYTES[g.codebook]);
    if (g.index === "runs") {
      if (!isInt(g.count_bits) || g.count_bits < 0 || g.count_bits > 32) {
        throw new Error(`group ${repr(g.name)} count_bits`);
      }
      expected.set(`rle.${g.name}`, packedSize(k, g.count_bits));
    } else {
      expected.set(`idx.${g.name}`, packedSize(count, bits));
    }
  }
  for (const r of meta.raw_fields) {
    if (r === null || typeof r !== "object" || !oneOf(r.encoding, FLOAT_BYTES)) throw new Error("raw field");
    expected.set(`raw.${r.field}`, count * width(r.field) * FLOAT_BYTES[r.encoding]);
  }
  return expected;
}

function pyList(names: Iterable<string>): string {
  return `[${[...names].sort().map(repr).join(", ")}]`;
}

/** Positions as float32, from f32, f16 or u16 fixed point on the bounding box. */
function decodeMeans(bytes: Uint8Array, meta: CgsMeta, fail: ReturnType<typeof failer>): Float32Array {
  const encoding = meta.positions.encoding;
  if (encoding !== "u16") return floats(bytes, encoding);
  const bbox = meta.positions.bbox;
  const ok =
    Array.isArray(bbox) &&
    bbox.length === 2 &&
    bbox.every((v) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number"));
  if (!ok) return fail("meta", "u16 positions need a bounding box");
  const [lo, hi] = bbox as number[][];
  const span = lo.map((l, axis) => (hi[axis] > l ? hi[axis] - l : 1.0));
  const q = uint16s(bytes);
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const axis = i % 3;
    out[i] = lo[axis] + (q[i] / 65535.0) * span[axis]; // float64, then rounded to float32
  }
  return out;
}

/** Decode .cgs bytes into Gaussians (in stored order), with the metadata and every section. */
export function decodeCgs(data: Uint8Array, source = "<bytes>"): CgsFile {
  const fail = failer(source);
  const { count: n, table } = readTable(data, source);
  const metaInfo = table.get("meta");
  if (!metaInfo) return fail("meta", "missing");
  if (metaInfo.raw > MAX_META_BYTES) fail("meta", `declares ${metaInfo.raw} bytes of metadata`);
  const meta = parseMeta(readSection(data, metaInfo, source), n, fail);

  let expected: Map<string, number>;
  try {
    expected = expectedSizes(meta, n, metaInfo.raw);
  } catch (e) {
    return fail("meta", `invalid group description (${(e as Error).message})`);
  }
  const sameNames = expected.size === table.size && [...expected.keys()].every((name) => table.has(name));
  if (!sameNames) {
    fail("section table", `sections ${pyList(table.keys())} do not match the metadata ${pyList(expected.keys())}`);
  }
  for (const [name, size] of expected) {
    const raw = table.get(name)!.raw;
    if (raw !== size) fail(name, `holds ${raw} bytes, metadata implies ${size}`);
  }
  const sections = new Map<string, Uint8Array>();
  for (const [name, info] of table) sections.set(name, readSection(data, info, source));

  const means = decodeMeans(sections.get("means")!, meta, fail);
  const opacityBytes = sections.get("opacities")!;
  let opacities: Float32Array;
  if (meta.opacities.encoding === "u8") {
    opacities = new Float32Array(n);
    for (let i = 0; i < n; i++) opacities[i] = U8_TO_LOGIT[opacityBytes[i]];
  } else {
    opacities = floats(opacityBytes, meta.opacities.encoding);
  }

  const widths = fieldWidths(meta.sh_degree);
  const fields: Partial<Record<Field, Float32Array>> = { means, opacities };
  for (const r of meta.raw_fields) fields[r.field] = floats(sections.get(`raw.${r.field}`)!, r.encoding);
  if (meta.sh_degree === 0 && !fields.shN && meta.groups.every((g) => !g.fields.includes("shN"))) {
    fields.shN = new Float32Array(0);
  }
  const covered = new Set<string>(["means", "opacities", ...Object.keys(fields), ...meta.groups.flatMap((g) => g.fields)]);
  // Indices first (their checks come before any gather), then the gathers.
  const indices = meta.groups.map((g) => groupIndices(g, sections, n, fail));
  const missing = FIELDS.filter((f) => !covered.has(f));
  if (missing.length) fail("meta", `fields ${pyList(missing)} are stored nowhere`);
  for (const name of ["means", "opacities"] as const) {
    if (!fields[name]!.every(Number.isFinite)) fail(name, "holds non-finite values");
  }
  meta.groups.forEach((g, gi) => {
    const codebook = floats(sections.get(`cb.${g.name}`)!, g.codebook);
    const idx = indices[gi];
    let start = 0;
    for (const field of g.fields) {
      const w = widths[field];
      const out = new Float32Array(n * w);
      for (let i = 0; i < n; i++) {
        const row = idx[i] * g.dim + start;
        for (let j = 0; j < w; j++) out[i * w + j] = codebook[row + j];
      }
      fields[field] = out;
      start += w;
    }
  });
  const gaussians = { count: n, shDegree: meta.sh_degree, ...fields } as Gaussians;
  return { gaussians, meta, table, sections };
}

/** The per-Gaussian codebook index of a group: bit-unpacked, or expanded from run lengths. */
function groupIndices(
  g: CgsGroup,
  sections: Map<string, Uint8Array>,
  n: number,
  fail: ReturnType<typeof failer>,
): Uint32Array {
  if (g.index === "runs") {
    const counts = unpackBits(sections.get(`rle.${g.name}`)!, g.k, g.count_bits!);
    let total = 0;
    for (const c of counts) total += c;
    if (total !== n) fail(`rle.${g.name}`, `run lengths sum to ${total}, not ${n}`);
    const out = new Uint32Array(n);
    let at = 0;
    counts.forEach((c, code) => {
      out.fill(code, at, at + c);
      at += c;
    });
    return out;
  }
  const idx = unpackBits(sections.get(`idx.${g.name}`)!, n, g.bits);
  let max = 0;
  for (const v of idx) max = v > max ? v : max;
  if (n && max >= g.k) fail(`idx.${g.name}`, `index ${max} outside a codebook of ${g.k}`);
  return idx;
}
