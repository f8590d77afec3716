/**
 * antimatter15 `.splat`: headerless, 32 bytes per Gaussian (position 3xf32, scale
 * 3xf32 activated, RGBA 4xu8, rotation 4xu8 = wxyz * 128 + 128), no SH; decoded
 * as compgs/io/splat.py decodes it.
 */
import { CorruptFileError } from "./errors";
import { type Gaussians, nonFiniteMessage, SH_C0 } from "./gaussians";
import { U8_TO_LOGIT } from "./numbers";

export const RECORD_BYTES = 32;

export function readSplat(data: Uint8Array, path = "<bytes>"): Gaussians {
  if (data.length % RECORD_BYTES) {
    throw new CorruptFileError(`${path}: .splat size ${data.length} is not a multiple of ${RECORD_BYTES} bytes`);
  }
  const n = data.length / RECORD_BYTES;
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const g: Gaussians = {
    count: n,
    shDegree: 0,
    means: new Float32Array(3 * n),
    quats: new Float32Array(4 * n),
    scales: new Float32Array(3 * n),
    opacities: new Float32Array(n),
    sh0: new Float32Array(3 * n),
    shN: new Float32Array(0),
  };
  for (let i = 0; i < n; i++) {
    const at = i * RECORD_BYTES;
    for (let j = 0; j < 3; j++) {
      g.means[3 * i + j] = view.getFloat32(at + 4 * j, true);
      const scale = view.getFloat32(at + 12 + 4 * j, true);
      if (scale <= 0) throw new CorruptFileError(`${path}: .splat holds non-positive scales`);
      g.scales[3 * i + j] = Math.log(scale);
      g.sh0[3 * i + j] = (data[at + 24 + j] / 255 - 0.5) / SH_C0;
    }
    g.opacities[i] = U8_TO_LOGIT[data[at + 27]];
    for (let j = 0; j < 4; j++) g.quats[4 * i + j] = (data[at + 28 + j] - 128) / 128;
  }
  const bad = nonFiniteMessage(g);
  if (bad) throw new CorruptFileError(`${path}: ${bad}`);
  return g;
}
