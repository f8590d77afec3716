/**
 * INRIA 3DGS PLY (binary little/big endian or ASCII), read as compgs/io/ply.py
 * reads it: one `vertex` element whose properties include x y z, f_dc_0..2,
 * f_rest_* (channel-major), opacity, scale_0..2, rot_0..3; every value becomes
 * float32. The header is checked against the file size before any array sized
 * from the declared vertex count is allocated.
 */
import { CorruptFileError, UnsupportedFormatError } from "./errors";
import { type Gaussians, nonFiniteMessage, shDegreeFromRest } from "./gaussians";

const MAX_HEADER_BYTES = 1 << 16;
const TYPE_SIZES: Record<string, number> = {
  char: 1, int8: 1, uchar: 1, uint8: 1,
  short: 2, int16: 2, ushort: 2, uint16: 2,
  int: 4, int32: 4, uint: 4, uint32: 4,
  float: 4, float32: 4, double: 8, float64: 8,
};
const REQUIRED = [
  "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
  "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
];

interface Element {
  name: string;
  count: number;
  props: { type: string; name: string }[];
  hasList: boolean;
}

export function isPly(head: Uint8Array): boolean {
  const text = String.fromCharCode(...head.subarray(0, 5));
  return text.startsWith("ply\n") || text.startsWith("ply\r\n");
}

function findAscii(data: Uint8Array, needle: string, from: number, to: number): number {
  const codes = [...needle].map((c) => c.charCodeAt(0));
  for (let i = from; i + codes.length <= Math.min(to, data.length); i++) {
    if (codes.every((c, j) => data[i + j] === c)) return i;
  }
  return -1;
}

function parseHeader(path: string, data: Uint8Array) {
  const end = findAscii(data, "end_header", 0, MAX_HEADER_BYTES);
  if (!isPly(data) || end < 0) {
    throw new CorruptFileError(`${path}: not a PLY file (no 'ply' magic or no end_header)`);
  }
  const newline = data.indexOf(0x0a, end);
  const bodyStart = newline < 0 ? data.length : newline + 1;
  const lines = new TextDecoder("ascii").decode(data.subarray(0, end)).split(/\r\n|\r|\n/);
  let format = "";
  const elements: Element[] = [];
  for (const line of lines.slice(1)) {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (!words.length || words[0] === "comment" || words[0] === "obj_info") continue;
    if (words[0] === "format" && words.length >= 2) format = words[1];
    else if (words[0] === "element" && words.length === 3 && /^\d+$/.test(words[2])) {
      elements.push({ name: words[1], count: Number(words[2]), props: [], hasList: false });
    } else if (words[0] === "property" && elements.length && words.length >= 3) {
      const element = elements[elements.length - 1];
      if (words[1] === "list") element.hasList = true;
      else if (Object.hasOwn(TYPE_SIZES, words[1])) element.props.push({ type: words[1], name: words[2] });
      else throw new CorruptFileError(`${path}: unknown PLY property type '${words[1]}'`);
    } else {
      throw new CorruptFileError(`${path}: malformed PLY header line '${line}'`);
    }
  }
  const vertexAt = elements.findIndex((e) => e.name === "vertex");
  if (vertexAt < 0) throw new CorruptFileError(`${path}: PLY has no 'vertex' element`);
  const vertex = elements[vertexAt];
  if (vertex.hasList) {
    throw new UnsupportedFormatError(`${path}: list properties on 'vertex' are not 3DGS data`);
  }
  const rowBytes = (e: Element) => e.props.reduce((sum, p) => sum + TYPE_SIZES[p.type], 0);
  const before = elements.slice(0, vertexAt);
  const available = data.length - bodyStart;
  if (format.startsWith("binary")) {
    const skip = before.reduce((sum, e) => sum + e.count * rowBytes(e), 0);
    const needed = (before.some((e) => e.hasList) ? 0 : skip) + vertex.count * rowBytes(vertex);
    if (available < needed) {
      throw new CorruptFileError(
        `${path}: truncated PLY: header declares ${vertex.count} vertices ` +
          `(${needed} bytes) but only ${available} bytes follow the header`,
      );
    }
  } else if (format === "ascii") {
    if (vertex.count * vertex.props.length * 2 > available) {
      throw new CorruptFileError(`${path}: truncated PLY: ${vertex.count} vertices declared`);
    }
  } else {
    throw new CorruptFileError(`${path}: unknown PLY format '${format}'`);
  }
  return { format, vertex, before, bodyStart, rowBytes };
}

/** Columns (float32) of the vertex element, by property name. */
function readColumns(path: string, data: Uint8Array, header: ReturnType<typeof parseHeader>): Map<string, Float32Array> {
  const { format, vertex, before, bodyStart, rowBytes } = header;
  const n = vertex.count;
  const columns = new Map(vertex.props.map((p) => [p.name, new Float32Array(n)]));
  if (format === "ascii") {
    const text = new TextDecoder("ascii").decode(data.subarray(bodyStart));
    const rows = text.split(/\r\n|\r|\n/).filter((line) => line.trim());
    const first = before.reduce((sum, e) => sum + e.count, 0);
    if (rows.length < first + n) {
      throw new CorruptFileError(`${path}: PLY holds ${Math.max(0, rows.length - first)} of ${n} declared vertices`);
    }
    for (let i = 0; i < n; i++) {
      const words = rows[first + i].trim().split(/\s+/);
      vertex.props.forEach((p, j) => {
        const value = Number(words[j]);
        if (words[j] === undefined || (Number.isNaN(value) && !/^[+-]?nan$/i.test(words[j]))) {
          throw new CorruptFileError(`${path}: unreadable PLY: bad value in vertex row ${i}`);
        }
        columns.get(p.name)![i] = value;
      });
    }
    return columns;
  }
  if (before.some((e) => e.hasList)) {
    throw new UnsupportedFormatError(`${path}: PLY elements with lists before 'vertex' are not supported here`);
  }
  const little = format === "binary_little_endian";
  if (!little && format !== "binary_big_endian") throw new CorruptFileError(`${path}: unknown PLY format '${format}'`);
  const start = bodyStart + before.reduce((sum, e) => sum + e.count * rowBytes(e), 0);
  const stride = rowBytes(vertex);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  let offset = 0;
  for (const p of vertex.props) {
    const column = columns.get(p.name)!;
    const read = reader(view, p.type, little);
    for (let i = 0; i < n; i++) column[i] = read(start + i * stride + offset);
    offset += TYPE_SIZES[p.type];
  }
  return columns;
}

function reader(view: DataView, type: string, little: boolean): (at: number) => number {
  if (type === "float" || type === "float32") return (at) => view.getFloat32(at, little);
  if (type === "double" || type === "float64") return (at) => view.getFloat64(at, little);
  const unsigned = type.startsWith("u");
  if (TYPE_SIZES[type] === 1) return unsigned ? (at) => view.getUint8(at) : (at) => view.getInt8(at);
  if (TYPE_SIZES[type] === 2) {
    return unsigned ? (at) => view.getUint16(at, little) : (at) => view.getInt16(at, little);
  }
  return unsigned ? (at) => view.getUint32(at, little) : (at) => view.getInt32(at, little);
}

export function readPly(data: Uint8Array, path = "<bytes>"): Gaussians {
  const header = parseHeader(path, data);
  const names = header.vertex.props.map((p) => p.name);
  const missing = REQUIRED.filter((name) => !names.includes(name));
  if (missing.length) {
    throw new CorruptFileError(`${path}: PLY is missing required 3DGS properties: ${missing.join(", ")}`);
  }
  const rest = names
    .filter((name) => /^f_rest_\d+$/.test(name))
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  if (rest.length % 3 || rest.some((name, i) => Number(name.slice(7)) !== i)) {
    throw new CorruptFileError(`${path}: f_rest_* properties are not a complete SH set`);
  }
  const k = rest.length / 3;
  const shDegree = shDegreeFromRest(k);
  if (shDegree === undefined) {
    throw new CorruptFileError(`${path}: ${rest.length} f_rest_* properties match no SH degree`);
  }
  const columns = readColumns(path, data, header);
  const n = header.vertex.count;
  const interleave = (keys: string[]): Float32Array => {
    const out = new Float32Array(n * keys.length);
    keys.forEach((key, j) => {
      const column = columns.get(key)!;
      for (let i = 0; i < n; i++) out[i * keys.length + j] = column[i];
    });
    return out;
  };
  // f_rest is channel-major (R for every band, then G, then B); shN is coefficient-major.
  const shN = new Float32Array(n * k * 3);
  for (let channel = 0; channel < 3; channel++) {
    for (let c = 0; c < k; c++) {
      const column = columns.get(`f_rest_${channel * k + c}`)!;
      for (let i = 0; i < n; i++) shN[(i * k + c) * 3 + channel] = column[i];
    }
  }
  const gaussians: Gaussians = {
    count: n,
    shDegree,
    means: interleave(["x", "y", "z"]),
    quats: interleave(["rot_0", "rot_1", "rot_2", "rot_3"]),
    scales: interleave(["scale_0", "scale_1", "scale_2"]),
    opacities: interleave(["opacity"]),
    sh0: interleave(["f_dc_0", "f_dc_1", "f_dc_2"]),
    shN,
  };
  const bad = nonFiniteMessage(gaussians);
  if (bad) throw new CorruptFileError(`${path}: ${bad}`);
  return gaussians;
}
