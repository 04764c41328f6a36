import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `agentwire` is a link to ../../bindings (a `file:` dependency): its
// `agentwire/react` imports "react", which must be this app's copy, not a
// second one found next to the linked package.
export default defineConfig({
  plugins: [react()],
  resolve: { dedupe: ["react", "react-dom"] },
  build: { sourcemap: true },
});
