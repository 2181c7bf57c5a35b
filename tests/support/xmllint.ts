/**
 * libxml2's verdict on whether documents are well-formed XML, as a test oracle.
 *
 * The documents are written to a scratch folder and checked by `xmllint --noout` a few
 * hundred files per process; each file's verdict is read from xmllint's error lines
 * ("<file>:<line>: parser error : ..."). Namespace errors are not well-formedness errors
 * (the server does not use namespaces), and xmllint exits 0 on them too.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { XMLLINT } from './reply-schema.js';

const FILES_PER_PROCESS = 400;

type Run = { code: number | null; stderr: string };

function runXmllint(files: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    // --nonet: a DOCTYPE in the corpus must never make the oracle fetch anything.
    const child = spawn('xmllint', ['--noout', '--nonet', ...files], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT' ? new Error(`xmllint not found; provide it with: ${XMLLINT.provide}`) : error);
    });
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

/** For each document, true when libxml2 finds it well-formed. */
export async function libxml2WellFormed(documents: readonly Uint8Array[]): Promise<boolean[]> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'xmllint-oracle-'));
  try {
    const files = documents.map((_, index) => path.join(directory, `${String(index).padStart(6, '0')}.xml`));
    await Promise.all(documents.map((document, index) => writeFile(files[index] as string, document)));
    const malformed = new Set<string>();
    for (let start = 0; start < files.length; start += FILES_PER_PROCESS) {
      const batch = files.slice(start, start + FILES_PER_PROCESS);
      const { code, stderr } = await runXmllint(batch);
      const before = malformed.size;
      for (const match of stderr.matchAll(/^(.+?\.xml):\d+: (\w+) error : /gm)) {
        if (match[2] !== 'namespace') malformed.add(match[1] as string);
      }
      const found = malformed.size - before;
      // The exit status must agree with what was read from the error lines.
      if ((code === 0) !== (found === 0)) {
        throw new Error(`could not read xmllint's verdict (exit ${code}, ${found} files in error):\n${stderr.slice(0, 2_000)}`);
      }
    }
    return files.map((file) => !malformed.has(file));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
