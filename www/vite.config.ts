import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// The recorder is the wasm-bindgen ES module built into recorder-wasm/pkg by scripts/build.sh.
const recorder = fileURLToPath(new URL("../recorder-wasm/pkg/recorder_wasm.js", import.meta.url));

export default defineConfig({
  resolve: { alias: { "livekeep-recorder": recorder } },
  server: {
    fs: { allow: [".."] },
    proxy: { "/api": "http://127.0.0.1:8080", "/media": "http://127.0.0.1:8080" },
  },
  build: { target: "es2022", sourcemap: true },
});
