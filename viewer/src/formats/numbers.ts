/**
 * Little-endian number arrays from bytes: float32, float16 (exact, through a
 * table) and uint16. The copies keep every view aligned whatever the offset of
 * the bytes inside their file.
 */

const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = mantissa * 2 ** -24;
    else if (exponent === 31) value = mantissa ? Number.NaN : Number.POSITIVE_INFINITY;
    else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
    table[h] = sign * value;
  }
  return table;
})();

function aligned(bytes: Uint8Array, size: number): ArrayBuffer {
  if (bytes.byteOffset % size === 0 && bytes.buffer instanceof ArrayBuffer) {
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  }
  return bytes.slice().buffer as ArrayBuffer;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function float32s(bytes: Uint8Array): Float32Array {
  if (!LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    return Float32Array.from({ length: bytes.length >> 2 }, (_, i) => view.getFloat32(4 * i, true));
  }
  return new Float32Array(aligned(bytes, 4), 0, bytes.length >> 2);
}

export function uint16s(bytes: Uint8Array): Uint16Array {
  if (!LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    return Uint16Array.from({ length: bytes.length >> 1 }, (_, i) => view.getUint16(2 * i, true));
  }
  return new Uint16Array(aligned(bytes, 2), 0, bytes.length >> 1);
}

export function float16s(bytes: Uint8Array): Float32Array {
  const halves = uint16s(bytes);
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = HALF_TO_FLOAT[halves[i]];
  return out;
}

/** float32 (``f32``) or float16 (``f16``) values, widened to float32. */
export function floats(bytes: Uint8Array, encoding: "f32" | "f16"): Float32Array {
  return encoding === "f32" ? float32s(bytes) : float16s(bytes);
}

/** Little-endian bytes of float32 values (what checksums are computed over). */
export function float32Bytes(values: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return out;
}

/**
 * Opacity logit of an 8-bit activated opacity (the .cgs `u8` encoding, also .splat
 * and .spz): a = clamp(byte, 0.25, 254.75) / 255, logit = ln(a / (1 - a)),
 * computed in float64 then rounded to float32 like the Python reader.
 */
export const U8_TO_LOGIT = (() => {
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const p = Math.min(Math.max(b, 0.25), 254.75) / 255;
    table[b] = Math.log(p) - Math.log1p(-p);
  }
  return table;
})();
