// Validates a glTF/GLB file with the Khronos glTF validator (npm package gltf-validator) and
// prints its JSON report on stdout. Usage: node tests/validate_gltf.mjs FILE
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url); // finds node_modules/ in the repository root
const validator = require("gltf-validator");
const file = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
  uri: file,
  maxIssues: 200,
  writeTimestamp: false,
});
process.stdout.write(JSON.stringify(report));
