/**
 * Builds the live page's script: src/main.ts and what it imports, bundled by esbuild
 * into api/agentstack_api/static/app.js (minified, with its source map beside it), where
 * the wheel and the image take it from.
 *
 *   tsx scripts/build.ts           write the bundle
 *   tsx scripts/build.ts --check   fail if the committed bundle is not this build
 *
 * The bundle is committed, so that `pip install` and the image need no Node; `--check`
 * (in hack/lint.sh) keeps it from drifting from its sources. esbuild's output is the
 * same for the same inputs and version (pinned in package-lock.json).
 */

import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const web = fileURLToPath(new URL("..", import.meta.url));
const check = process.argv.includes("--check");

const result = await build({
  absWorkingDir: web,
  entryPoints: ["src/main.ts"],
  outfile: "../api/agentstack_api/static/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  write: !check,
  logLevel: "warning",
});

if (check) {
  const stale: string[] = [];
  for (const file of result.outputFiles ?? []) {
    const committed = await readFile(file.path).catch(() => null);
    if (committed === null || !Buffer.from(file.contents).equals(committed)) {
      stale.push(relative(join(web, ".."), file.path));
    }
  }
  if (stale.length) {
    console.error(
      `not the build of web/src: ${stale.join(", ")}; run \`npm --prefix web run build\``,
    );
    process.exit(1);
  }
}
