import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// The page uses the recorder's npm package as an app would, from recorder-wasm/pkg (built by
// scripts/build.sh) through aliases, so `npm ci` needs no package that does not exist yet.
const pkg = (file: string) => fileURLToPath(new URL(`../recorder-wasm/pkg/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // Regexes: a plain "@livekeep/recorder" would also rewrite "@livekeep/recorder/react".
    alias: [
      { find: /^@livekeep\/recorder\/react$/, replacement: pkg("react.js") },
      { find: /^@livekeep\/recorder$/, replacement: pkg("index.js") },
    ],
    // The hook lives outside www: its `import "react"` must find www's one copy of React.
    dedupe: ["react", "react-dom"],
  },
  server: {
    fs: { allow: [".."] },
    proxy: { "/api": "http://127.0.0.1:8080", "/media": "http://127.0.0.1:8080" },
  },
  build: { target: "es2022", sourcemap: true },
});
