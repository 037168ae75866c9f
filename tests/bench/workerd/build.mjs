// build.mjs -- bundle src/worker.js with workers-qb into dist/worker.js
// (one ES module, as Miniflare loads it) through esbuild's JS API, which
// works whether or not npm ran esbuild's install script.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
await build({
  entryPoints: [path.join(here, 'src', 'worker.js')],
  outfile: path.join(here, 'dist', 'worker.js'),
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  logLevel: 'warning',
});
