/**
 * Bit-unpacking as docs/format.md specifies: value i occupies stream bits
 * [i*b, (i+1)*b), stream bit j is bit (j mod 8) of byte floor(j/8), b <= 32.
 */

/** Bits to index K codes: ceil(log2 K), 0 for K = 1 (exact for every K below 2^53). */
export function bitsFor(k: number): number {
  let bits = 0;
  while (2 ** bits < k) bits++;
  return bits;
}

export function packedSize(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

/** ``count`` unsigned values of ``bits`` bits each; ``data`` must hold packedSize bytes. */
export function unpackBits(data: Uint8Array, count: number, bits: number): Uint32Array {
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) {
    throw new RangeError(`bit width must be 0..32, got ${bits}`);
  }
  const need = packedSize(count, bits);
  if (data.length < need) {
    throw new RangeError(`${count} values of ${bits} bits need ${need} bytes, got ${data.length}`);
  }
  const out = new Uint32Array(count);
  if (bits === 0 || count === 0) return out;
  if (bits === 8) {
    out.set(data.subarray(0, count));
    return out;
  }
  if (bits === 16 || bits === 32) {
    const view = new DataView(data.buffer, data.byteOffset, need);
    for (let i = 0; i < count; i++) {
      out[i] = bits === 16 ? view.getUint16(2 * i, true) : view.getUint32(4 * i, true);
    }
    return out;
  }
  // Up to 5 bytes hold one value; pad so that every read stays inside the array.
  const padded = new Uint8Array(need + 8);
  padded.set(data.subarray(0, need));
  const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
  for (let i = 0; i < count; i++) {
    const start = i * bits;
    const byte = Math.floor(start / 8);
    const shift = start % 8;
    const lo =
      (padded[byte] | (padded[byte + 1] << 8) | (padded[byte + 2] << 16) | (padded[byte + 3] << 24)) >>> 0;
    const word = shift ? ((lo >>> shift) | (padded[byte + 4] << (32 - shift))) >>> 0 : lo;
    out[i] = (word & mask) >>> 0;
  }
  return out;
}
