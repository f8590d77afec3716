// Builds the viewer into the Python package (compgs/view/static), with stable
// file names so that a rebuild of unchanged sources leaves git clean, and
// relative URLs so that the folder works under any path of any static host.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "../compgs/view/static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      output: {
        entryFileNames: "assets/viewer.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
      },
    },
  },
});
