// server.mjs PORT PERSIST_DIR -- host dist/worker.js (esbuild bundle of
// src/worker.js) in Miniflare 4 / workerd on 127.0.0.1:PORT with a local
// D1 database "DB" stored under PERSIST_DIR, creating the logs table.
// Prints "ready URL" once it serves.  On SIGTERM/SIGINT it disposes
// Miniflare (workerd exits) and exits, so the caller can count rows with
// sqlite3 on the D1 file afterwards.
import { Miniflare } from 'miniflare';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const [port, persist] = process.argv.slice(2);
if (!port || !persist) {
  console.error('usage: node server.mjs PORT PERSIST_DIR');
  process.exit(2);
}

const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(here, 'dist', 'worker.js'),
  compatibilityDate: '2025-01-01',
  d1Databases: { DB: 'bench-logs' },
  d1Persist: persist,
  host: '127.0.0.1',
  port: Number(port),
});

let stopping = false;
async function stop(sig) {
  if (stopping) return;
  stopping = true;
  console.error(`server.mjs: ${sig}, disposing`);
  try {
    await mf.dispose();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

const url = await mf.ready;
const db = await mf.getD1Database('DB');
await db.exec(
  'CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, method TEXT NOT NULL, path TEXT NOT NULL, timestamp TEXT NOT NULL)'
);
console.log(`ready ${url}`);
