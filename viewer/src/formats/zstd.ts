/**
 * Bounded zstd inflation with fzstd: a section may never produce more than the
 * decoded length the file's metadata implies, and a frame may not ask for a
 * window larger than libzstd's default decoder limit (2^27 bytes, what the
 * Python reader accepts), so a hostile file cannot make us allocate gigabytes.
 */
import { Decompress } from "fzstd";

const MAX_WINDOW = 2 ** 27;
const ZSTD_MAGIC = 0xfd2fb528;

/** Window bytes and declared content size of the frame at the start of ``data``. */
function frameHeader(data: Uint8Array): { window: number; contentSize: number | null } {
  if (data.length < 6) throw new Error("truncated zstd frame header");
  const magic = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
  if (magic !== ZSTD_MAGIC) throw new Error("not a zstd frame (wrong magic)");
  const descriptor = data[4];
  const singleSegment = (descriptor >> 5) & 1;
  const dictBytes = [0, 1, 2, 4][descriptor & 3];
  const fcsFlag = descriptor >> 6;
  const sizeBytes = fcsFlag ? 1 << fcsFlag : singleSegment;
  let pos = 5;
  let window = 0;
  if (!singleSegment) {
    const wd = data[pos++];
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  pos += dictBytes;
  if (data.length < pos + sizeBytes) throw new Error("truncated zstd frame header");
  let contentSize: number | null = null;
  if (sizeBytes) {
    contentSize = 0;
    for (let i = 0; i < sizeBytes; i++) contentSize += data[pos + i] * 2 ** (8 * i);
    if (sizeBytes === 2) contentSize += 256;
  }
  if (singleSegment) window = contentSize ?? 0;
  return { window, contentSize };
}

/** Inflate one zstd frame that must decode to exactly ``expected`` bytes. */
export function inflateZstd(payload: Uint8Array, expected: number): Uint8Array {
  const { window, contentSize } = frameHeader(payload);
  if (contentSize !== null && contentSize !== expected) {
    throw new Error(`frame declares ${contentSize} bytes`);
  }
  if (window > Math.max(MAX_WINDOW, expected)) {
    throw new Error(`frame asks for a ${window}-byte window`);
  }
  const out = new Uint8Array(expected);
  let filled = 0;
  let overflow = false;
  const stream = new Decompress((chunk) => {
    if (overflow || filled + chunk.length > expected) {
      overflow = true;
      return;
    }
    out.set(chunk, filled);
    filled += chunk.length;
  });
  // Push in slices so that an overflow stops the work early.
  const SLICE = 1 << 16;
  for (let pos = 0; pos < payload.length && !overflow; pos += SLICE) {
    const end = Math.min(pos + SLICE, payload.length);
    stream.push(payload.subarray(pos, end), end === payload.length);
  }
  if (overflow) throw new Error(`inflates to more than ${expected} bytes`);
  if (filled !== expected) throw new Error(`inflates to ${filled} bytes`);
  return out;
}
