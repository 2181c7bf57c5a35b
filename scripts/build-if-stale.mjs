#!/usr/bin/env node
/**
 * Runs the TypeScript build only when a source is newer than the last build, so `npm start`
 * and `npm run client` start in well under a second on an installed clone (a full build takes
 * about 10 s) and still work on a fresh one. Plain JavaScript: it runs before anything is built.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Written after each successful build by this script; `npm run build` leaves it alone, so a
// build by hand is simply followed by one more here (never a stale start).
const stamp = path.join(root, 'dist', '.build-stamp');

function newestSource(directory) {
  let newest = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

function builtAt() {
  try {
    return statSync(stamp).mtimeMs;
  } catch {
    return -1;
  }
}

const sources = Math.max(
  statSync(path.join(root, 'tsconfig.json')).mtimeMs,
  statSync(path.join(root, 'package-lock.json')).mtimeMs,
  ...['server', 'client', 'scripts', 'tests'].map((folder) => newestSource(path.join(root, folder))),
);
if (sources >= builtAt()) {
  process.stderr.write('building (TypeScript sources changed since the last build)...\n');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}
