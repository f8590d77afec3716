// Builds the viewer into the Python package (compgs/view/static), with stable
// file names so that a rebuild of unchanged sources leaves git clean, and
// relative URLs so that the folder works under any path of any static host.
// assets/build-info.json records a hash of the sources, so that a test can
// tell when the committed bundle is older than the sources (rebuild then).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const SOURCES = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "src"];

function listFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => listFiles(join(path, name)));
}

/** sha256 over (relative path, sha256 of content) of every source file, sorted by path. */
export function sourcesHash(root: string): string {
  const files = SOURCES.flatMap((name) => listFiles(join(root, name)))
    .map((file) => relative(root, file).split(sep).join("/"))
    .sort();
  const hash = createHash("sha256");
  for (const file of files) {
    hash.update(`${file}\0`);
    hash.update(createHash("sha256").update(readFileSync(join(root, file))).digest());
  }
  return hash.digest("hex");
}

function buildInfo(): Plugin {
  return {
    name: "compgs-build-info",
    generateBundle() {
      const info = { sources_sha256: sourcesHash(fileURLToPath(new URL(".", import.meta.url))), note: "see viewer/vite.config.ts" };
      this.emitFile({ type: "asset", fileName: "assets/build-info.json", source: `${JSON.stringify(info, null, 2)}\n` });
    },
  };
}

export default defineConfig({
  base: "./",
  plugins: [buildInfo()],
  build: {
    outDir: "../compgs/view/static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 4096,
    // The bundled libraries' licences (Spark, three.js, fzstd: all MIT) ship with it.
    license: { fileName: "assets/third-party-licenses.md" },
    rollupOptions: {
      output: {
        entryFileNames: "assets/viewer.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
      },
    },
  },
});
