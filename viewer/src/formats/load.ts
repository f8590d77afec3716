/**
 * One entry point for every format: detect it (signature first, then suffix, as
 * compgs.io.detect_format does) and decode the bytes into Gaussians.
 */
import { crc32, hex32 } from "./crc32";
import { type CgsFile, decodeCgs, isCgs } from "./cgs";
import { CorruptFileError, UnsupportedFormatError } from "./errors";
import { type Field, fieldChecksums, type Gaussians, nonFiniteMessage } from "./gaussians";
import { isPly, readPly } from "./ply";
import { RECORD_BYTES, readSplat } from "./splat";
import { isSpz, readSpz } from "./spz";

export type FormatName = "cgs" | "ply" | "spz" | "splat";
const SUFFIXES: Record<string, FormatName> = { ".cgs": "cgs", ".ply": "ply", ".spz": "spz", ".splat": "splat" };
const KNOWN = ".ply, .spz, .splat, .cgs";

export interface Decoded {
  format: FormatName;
  gaussians: Gaussians;
  cgs?: CgsFile;
  /** Milliseconds spent decoding (parsing, checking, inflating, gathering). */
  decodeMs: number;
}

function suffixOf(name: string): string {
  const clean = name.split(/[?#]/)[0];
  const dot = clean.lastIndexOf(".");
  return dot > clean.lastIndexOf("/") ? clean.slice(dot).toLowerCase() : "";
}

export function detectFormat(data: Uint8Array, name: string): FormatName {
  if (!data.length) throw new CorruptFileError(`${name}: file is empty`);
  if (isPly(data)) return "ply";
  if (isSpz(data)) return "spz";
  if (isCgs(data)) return "cgs";
  const bySuffix = SUFFIXES[suffixOf(name)];
  if (bySuffix === "splat") return "splat";
  if (!bySuffix && data.length % RECORD_BYTES === 0) return "splat";
  const what = bySuffix ? `a ${bySuffix} file` : "any known format";
  throw new UnsupportedFormatError(`${name}: content does not look like ${what} (${KNOWN})`);
}

/** Decode ``data`` in ``format`` (detected from content and ``name`` when not given). */
export async function decodeFile(data: Uint8Array, name: string, format?: FormatName): Promise<Decoded> {
  const start = performance.now();
  format ??= detectFormat(data, name);
  let gaussians: Gaussians;
  let cgs: CgsFile | undefined;
  if (format === "cgs") {
    cgs = decodeCgs(data, name);
    gaussians = cgs.gaussians;
    const bad = nonFiniteMessage(gaussians);
    if (bad) throw new CorruptFileError(`${name}: ${bad}`);
  } else if (format === "ply") gaussians = readPly(data, name);
  else if (format === "spz") gaussians = await readSpz(data, name);
  else gaussians = readSplat(data, name);
  return { format, gaussians, cgs, decodeMs: performance.now() - start };
}

/** What the tests compare with the Python reader: counts and CRC-32s of fields and sections. */
export interface Summary {
  ok: boolean;
  error?: string;
  errorType?: string;
  format?: FormatName;
  count?: number;
  shDegree?: number;
  checksums?: Record<Field, string>;
  sections?: Record<string, string>;
  decodeMs?: number;
}

export function summarize(decoded: Decoded): Summary {
  const sections: Record<string, string> = {};
  for (const [name, bytes] of decoded.cgs?.sections ?? []) sections[name] = hex32(crc32(bytes));
  return {
    ok: true,
    format: decoded.format,
    count: decoded.gaussians.count,
    shDegree: decoded.gaussians.shDegree,
    checksums: fieldChecksums(decoded.gaussians),
    sections,
    decodeMs: decoded.decodeMs,
  };
}

export function summarizeError(error: unknown): Summary {
  const e = error as Error;
  return { ok: false, error: e.message ?? String(e), errorType: e.name ?? "Error" };
}
