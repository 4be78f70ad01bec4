import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// The page uses the recorder's npm package as an app would, from recorder-wasm/pkg (built by
// scripts/build.sh) through aliases, so `npm ci` needs no package that does not exist yet.
const pkg = (file: string) => fileURLToPath(new URL(`../recorder-wasm/pkg/${file}`, import.meta.url));

export default defineConfig({
  // Relative asset URLs: the built page works at the root and under a path prefix
  // (`livekeep serve --public-url https://host.example/livekeep`).
  base: "./",
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
  build: {
    target: "es2022",
    sourcemap: true,
    rollupOptions: {
      // The recorder's React entry starts with "use client" (for Next.js); a plain Vite app
      // has no server components, and Rollup only warns that it drops the directive.
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE" && warning.message.includes("use client")) return;
        warn(warning);
      },
    },
  },
});
