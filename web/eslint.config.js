// ESLint over the page's TypeScript: typescript-eslint's strict, type-aware rules (they
// read the types tsc checks, so `any` leaking in from JSON or a library is caught too).
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["node_modules/"] },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // The page writes counts and sizes into its lines: numbers in templates are meant.
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      // `() => list.remove()` as a callback says what it does; braces add nothing.
      "@typescript-eslint/no-confusing-void-expression": ["error", { ignoreArrowShorthand: true }],
    },
  },
  { files: ["**/*.js"], extends: [tseslint.configs.disableTypeChecked] },
  {
    // node:test's describe and it return promises the runner itself awaits.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", name: ["describe", "it"], package: "node:test" },
          ],
        },
      ],
    },
  },
  {
    // The page runs in a browser: Node's modules are for the tests and the build only.
    files: ["src/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["node:*"] }] },
  },
);
