/**
 * The 3D view: three.js + Spark (World Labs' Gaussian splat renderer). Decoded
 * Gaussians go to Spark as a PackedSplats (its 16-byte-per-splat layout, with
 * SH bands 1-3 in its packed SH arrays), the scene is turned from RDF (y down)
 * to three.js's y-up axes, and the camera is orbit- or fly-controlled.
 */
import { PackedSplats, SparkControls, SparkRenderer, SplatMesh, utils } from "@sparkjsdev/spark";
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { type Gaussians, numRestCoeffs, SH_C0 } from "./formats/gaussians";

/** A pinhole camera in the OpenCV convention of compgs.data.Cameras. */
export interface OpenCvCamera {
  /** Camera-to-world 4x4, row-major, x right, y down, z forward, in file (RDF) coordinates. */
  camtoworld: number[];
  fx: number;
  fy: number;
  cx: number;
  cy: number;
  width: number;
  height: number;
}

export type ControlMode = "orbit" | "fly";

// RDF (file) -> three.js world: a half turn about x (y down -> y up, z forward -> z back).
const FLIP = new THREE.Matrix4().makeScale(1, -1, -1);

export class SplatView {
  readonly renderer: THREE.WebGLRenderer;
  readonly camera = new THREE.PerspectiveCamera(60, 1, 0.01, 1000);
  private readonly scene = new THREE.Scene();
  private readonly spark: SparkRenderer;
  private readonly orbit: OrbitControls;
  private readonly fly: SparkControls;
  private mesh: SplatMesh | null = null;
  private fixedProjection: THREE.Matrix4 | null = null;
  private lastFrame = 0;
  private frameMs: number[] = [];
  mode: ControlMode = "orbit";
  /** Frames drawn since the current scene (or camera) was set. */
  frames = 0;

  constructor(private readonly container: HTMLElement) {
    this.renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.renderer.setClearColor(0x000000, 1);
    container.appendChild(this.renderer.domElement);
    // 3DGS conventions: z-depth sort, 0.3 px low-pass, 3 sigma extent (as compgs.render).
    this.spark = new SparkRenderer({
      renderer: this.renderer,
      preBlurAmount: 0.3,
      blurAmount: 0,
      sortRadial: false,
      maxStdDev: 3,
    });
    this.scene.add(this.spark);
    this.orbit = new OrbitControls(this.camera, this.renderer.domElement);
    this.orbit.enableDamping = true;
    this.fly = new SparkControls({ canvas: this.renderer.domElement });
    this.setMode("orbit");
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.renderer.setAnimationLoop((time) => this.frame(time));
  }

  private resize(): void {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.renderer.domElement.style.width = `${w}px`;
    this.renderer.domElement.style.height = `${h}px`;
    if (!this.fixedProjection) {
      this.camera.aspect = w / h;
      this.camera.updateProjectionMatrix();
    }
  }

  private frame(time: number): void {
    if (this.lastFrame) {
      this.frameMs.push(time - this.lastFrame);
      if (this.frameMs.length > 60) this.frameMs.shift();
    }
    this.lastFrame = time;
    if (!this.fixedProjection) {
      if (this.mode === "orbit") this.orbit.update();
      else this.fly.update(this.camera);
    } else {
      this.camera.projectionMatrix.copy(this.fixedProjection);
      this.camera.projectionMatrixInverse.copy(this.fixedProjection).invert();
    }
    this.renderer.render(this.scene, this.camera);
    if (this.mesh) this.frames++;
  }

  pose(): { position: number[]; quaternion: number[]; target: number[] } {
    return {
      position: this.camera.position.toArray(),
      quaternion: this.camera.quaternion.toArray(),
      target: this.orbit.target.toArray(),
    };
  }

  /** Mean milliseconds between the last frames (0 before two frames). */
  frameTime(): number {
    return this.frameMs.length ? this.frameMs.reduce((a, b) => a + b, 0) / this.frameMs.length : 0;
  }

  setMode(mode: ControlMode): void {
    this.mode = mode;
    this.orbit.enabled = mode === "orbit";
    this.fly.fpsMovement.enable = mode === "fly";
    this.fly.pointerControls.enable = mode === "fly";
    if (mode === "orbit") {
      // Orbit about the point in front of the camera, at the current target distance.
      const distance = this.camera.position.distanceTo(this.orbit.target);
      const forward = new THREE.Vector3(0, 0, -1).applyQuaternion(this.camera.quaternion);
      this.orbit.target.copy(this.camera.position).addScaledVector(forward, distance || 1);
    }
  }

  async show(g: Gaussians): Promise<void> {
    if (this.mesh) {
      this.scene.remove(this.mesh);
      this.mesh.dispose();
    }
    this.mesh = new SplatMesh({ packedSplats: toPackedSplats(g) });
    this.mesh.quaternion.set(1, 0, 0, 0); // the RDF -> y-up half turn (FLIP)
    this.scene.add(this.mesh);
    await this.mesh.initialized;
    this.fit(g);
    this.frames = 0;
    this.frameMs = []; // the decoding pause is not a frame
    this.lastFrame = 0;
  }

  /** Look at the scene's robust bounding box (2nd-98th percentile of the centres). */
  fit(g: Gaussians): void {
    this.fixedProjection = null;
    this.stopOrbitMotion();
    const { lo, hi } = robustBounds(g.means, g.count);
    const center = new THREE.Vector3((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2).applyMatrix4(FLIP);
    const radius = Math.max(1e-6, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
    const fov = THREE.MathUtils.degToRad(this.camera.fov);
    const distance = (radius / Math.sin(fov / 2)) * 0.9;
    this.camera.near = distance / 1000;
    this.camera.far = distance + radius * 20;
    this.camera.up.set(0, 1, 0);
    this.camera.position.copy(center).add(new THREE.Vector3(0, 0, distance));
    this.camera.lookAt(center);
    this.resize();
    this.camera.updateProjectionMatrix();
    this.orbit.target.copy(center);
    this.orbit.update();
    this.fly.fpsMovement.moveSpeed = radius / 2;
  }

  /** Drop the orbit controls' leftover (damped) motion so that a set pose stays put. */
  private stopOrbitMotion(): void {
    this.orbit.enableDamping = false;
    this.orbit.update();
    this.orbit.enableDamping = true;
  }

  /** Place the camera exactly (intrinsics in pixels); controls stay off until release. */
  setCamera(cam: OpenCvCamera): void {
    this.stopOrbitMotion();
    const c2w = new THREE.Matrix4().set(...(cam.camtoworld as Parameters<THREE.Matrix4["set"]>));
    // three.js camera axes are OpenCV's with y and z flipped; the world is flipped too.
    const world = FLIP.clone().multiply(c2w).multiply(FLIP);
    world.decompose(this.camera.position, this.camera.quaternion, this.camera.scale);
    this.camera.updateMatrixWorld(true);
    const near = 0.01;
    const far = 1000;
    const { fx, fy, cx, cy, width: w, height: h } = cam;
    this.fixedProjection = new THREE.Matrix4().set(
      (2 * fx) / w, 0, 1 - (2 * cx) / w, 0,
      0, (2 * fy) / h, (2 * cy) / h - 1, 0,
      0, 0, -(far + near) / (far - near), (-2 * far * near) / (far - near),
      0, 0, -1, 0,
    );
    this.orbit.enabled = false;
    this.fly.fpsMovement.enable = false;
    this.fly.pointerControls.enable = false;
    this.frames = 0;
  }

  /** Return to interactive control from the current pose. */
  releaseCamera(): void {
    this.fixedProjection = null;
    this.resize();
    this.setMode(this.mode);
  }
}

/** Per-axis 2nd and 98th percentiles of up to 65536 sampled centres. */
function robustBounds(means: Float32Array, n: number): { lo: number[]; hi: number[] } {
  if (!n) return { lo: [-1, -1, -1], hi: [1, 1, 1] };
  const step = Math.max(1, Math.floor(n / 65536));
  const lo: number[] = [];
  const hi: number[] = [];
  for (let axis = 0; axis < 3; axis++) {
    const values: number[] = [];
    for (let i = 0; i < n; i += step) values.push(means[3 * i + axis]);
    values.sort((a, b) => a - b);
    lo.push(values[Math.floor(0.02 * (values.length - 1))]);
    hi.push(values[Math.ceil(0.98 * (values.length - 1))]);
  }
  return { lo, hi };
}

/** Gaussians -> Spark's PackedSplats (activated values; colour range and SH scales fitted). */
export function toPackedSplats(g: Gaussians): PackedSplats {
  const n = g.count;
  const k = numRestCoeffs(g.shDegree) ?? 0;
  // The DC colour may leave [0, 1] (SH bands add to it): fit the 8-bit range to the data.
  let rgbMin = 0;
  let rgbMax = 1;
  for (let i = 0; i < 3 * n; i++) {
    const c = 0.5 + SH_C0 * g.sh0[i];
    if (c < rgbMin) rgbMin = c;
    if (c > rgbMax) rgbMax = c;
  }
  const bandMax = [1, 1, 1];
  const bandOf = (c: number) => (c < 3 ? 0 : c < 8 ? 1 : 2);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      for (let ch = 0; ch < 3; ch++) {
        const v = Math.abs(g.shN[(i * k + c) * 3 + ch]);
        if (v > bandMax[bandOf(c)]) bandMax[bandOf(c)] = v;
      }
    }
  }
  const encoding = { rgbMin, rgbMax, sh1Max: bandMax[0], sh2Max: bandMax[1], sh3Max: bandMax[2] };
  const capacity = utils.getTextureSize(Math.max(n, 1)).maxSplats;
  const packedArray = new Uint32Array(capacity * 4);
  const extra: Record<string, Uint32Array> = {};
  if (k >= 3) extra.sh1 = new Uint32Array(capacity * 2);
  if (k >= 8) extra.sh2 = new Uint32Array(capacity * 4);
  if (k >= 15) extra.sh3 = new Uint32Array(capacity * 4);
  const sh1 = new Float32Array(9);
  const sh2 = new Float32Array(15);
  const sh3 = new Float32Array(21);
  for (let i = 0; i < n; i++) {
    const q = g.quats.subarray(4 * i, 4 * i + 4);
    const norm = Math.hypot(q[0], q[1], q[2], q[3]) || 1;
    const s = g.scales;
    const o = g.opacities[i];
    utils.setPackedSplat(
      packedArray, i,
      g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2],
      Math.exp(s[3 * i]), Math.exp(s[3 * i + 1]), Math.exp(s[3 * i + 2]),
      q[1] / norm, q[2] / norm, q[3] / norm, q[0] / norm,
      1 / (1 + Math.exp(-o)),
      0.5 + SH_C0 * g.sh0[3 * i], 0.5 + SH_C0 * g.sh0[3 * i + 1], 0.5 + SH_C0 * g.sh0[3 * i + 2],
      encoding,
    );
    if (k) {
      const rest = g.shN.subarray(3 * k * i, 3 * k * (i + 1));
      sh1.set(rest.subarray(0, 9));
      utils.encodeSh1Rgb(extra.sh1, i, sh1, encoding);
      if (k >= 8) {
        sh2.set(rest.subarray(9, 24));
        utils.encodeSh2Rgb(extra.sh2, i, sh2, encoding);
      }
      if (k >= 15) {
        sh3.set(rest.subarray(24, 45));
        utils.encodeSh3Rgb(extra.sh3, i, sh3, encoding);
      }
    }
  }
  return new PackedSplats({ packedArray, numSplats: n, extra, splatEncoding: encoding });
}
