/**
 * One set of 3D Gaussians as the readers produce it: pre-activation parameters in
 * the layout of compgs.splats.Splats (INRIA 3DGS conventions), RDF world axes
 * (x right, y down, z forward). Every array is float32, Gaussian-major.
 */
import { crc32, hex32 } from "./crc32";
import { float32Bytes } from "./numbers";

export const SH_C0 = 0.28209479177387814;
export const FIELDS = ["means", "quats", "scales", "opacities", "sh0", "shN"] as const;
export type Field = (typeof FIELDS)[number];

export interface Gaussians {
  count: number;
  shDegree: number;
  means: Float32Array; // [N, 3]
  quats: Float32Array; // [N, 4] raw wxyz, not normalised
  scales: Float32Array; // [N, 3] log standard deviations
  opacities: Float32Array; // [N] logits
  sh0: Float32Array; // [N, 3] degree-0 coefficient per RGB channel
  shN: Float32Array; // [N, K, 3] higher bands, coefficient-major, RGB innermost
}

const NUM_REST: Record<number, number> = { 0: 0, 1: 3, 2: 8, 3: 15 };

/** Higher-band SH coefficients per channel at ``degree``, or undefined for a bad degree. */
export function numRestCoeffs(degree: number): number | undefined {
  return Number.isInteger(degree) ? NUM_REST[degree] : undefined;
}

export function shDegreeFromRest(k: number): number | undefined {
  const found = Object.entries(NUM_REST).find(([, count]) => count === k);
  return found ? Number(found[0]) : undefined;
}

/** Values per Gaussian of each field. */
export function fieldWidths(shDegree: number): Record<Field, number> {
  return {
    means: 3,
    quats: 4,
    scales: 3,
    opacities: 1,
    sh0: 3,
    shN: 3 * (numRestCoeffs(shDegree) ?? 0),
  };
}

/**
 * The first field holding NaN or Inf, as the Python reader words it
 * ("Splats.<field> holds non-finite values in <n> Gaussian(s), first at index <i>").
 */
export function nonFiniteMessage(g: Gaussians): string | null {
  const widths = fieldWidths(g.shDegree);
  for (const name of FIELDS) {
    const values = g[name];
    const width = widths[name];
    let bad = 0;
    let first = -1;
    for (let i = 0; i < g.count; i++) {
      for (let j = 0; j < width; j++) {
        if (!Number.isFinite(values[i * width + j])) {
          if (first < 0) first = i;
          bad++;
          break;
        }
      }
    }
    if (bad) return `Splats.${name} holds non-finite values in ${bad} Gaussian(s), first at index ${first}`;
  }
  return null;
}

/** CRC-32 (hex) of each field's little-endian float32 bytes: what the tests compare with Python. */
export function fieldChecksums(g: Gaussians): Record<Field, string> {
  const out = {} as Record<Field, string>;
  for (const name of FIELDS) out[name] = hex32(crc32(float32Bytes(g[name])));
  return out;
}
