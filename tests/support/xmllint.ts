/**
 * libxml2's verdict on whether documents are well-formed XML, as a test oracle: xmllint's.
 *
 * libxml2WellFormed runs xmllint in process, built to WebAssembly (npm package xmllint-wasm),
 * so `npm test` needs no system package; xmllintWellFormed runs the xmllint program (Debian
 * libxml2-utils), only to show that both give the same verdicts. Both run
 * `xmllint --noout --nonet` a few hundred documents at a time, and read each document's
 * verdict from xmllint's error lines ("<file>:<line>: parser error : ..."). Namespace errors
 * are not well-formedness errors (the server does not use namespaces), and xmllint exits 0 on
 * them too.
 *
 * (libxml2-wasm, which checks the XML Schemas, cannot be the judge here: after a namespace
 * error it reports no further error, so "<a:b/>junk" would pass as well-formed.)
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { validateXML } from 'xmllint-wasm';
import { XMLLINT } from './reply-schema.js';

/** Documents per xmllint run: more per WebAssembly run was seen to exhaust its memory. */
const FILES_PER_RUN = 400;

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

/** The same command in WebAssembly, on in-memory files; its exit status 1 (not well-formed) comes as a rejection. */
async function runXmllintWasm(files: string[], contents: Map<string, Uint8Array>): Promise<Run> {
  try {
    const result = await validateXML({
      xml: files.map((fileName) => ({ fileName, contents: contents.get(fileName) as Uint8Array })),
      normalization: 'format',
      // Only --noout --nonet and the files (the library would add --format).
      modifyArguments: () => ['--noout', '--nonet', ...files],
    });
    return { code: result.valid ? 0 : 3, stderr: result.rawOutput };
  } catch (error) {
    const { code, message } = error as { code?: unknown; message: string };
    if (typeof code !== 'number') throw error;
    return { code, stderr: message };
  }
}

/** Each document's verdict, from runs of `run` over FILES_PER_RUN named files at a time. */
async function verdicts(files: string[], run: (batch: string[]) => Promise<Run>): Promise<boolean[]> {
  const malformed = new Set<string>();
  for (let start = 0; start < files.length; start += FILES_PER_RUN) {
    const batch = files.slice(start, start + FILES_PER_RUN);
    const { code, stderr } = await run(batch);
    const before = malformed.size;
    // "parser error", "I/O error" (invalid bytes in the encoding), "namespace error", ...
    for (const match of stderr.matchAll(/^(.+?\.xml):\d+: ([\w/]+) error : /gm)) {
      if (match[2] !== 'namespace') malformed.add(match[1] as string);
    }
    const found = malformed.size - before;
    // The exit status must agree with what was read from the error lines.
    if ((code === 0) !== (found === 0)) {
      throw new Error(
        `could not read xmllint's verdict (exit ${code}, ${found} files in error):\n${stderr.slice(0, 2_000)}`,
      );
    }
  }
  return files.map((file) => !malformed.has(file));
}

function names(documents: readonly Uint8Array[]): string[] {
  return documents.map((_, index) => `${String(index).padStart(6, '0')}.xml`);
}

/** For each document, true when xmllint (in process, WebAssembly) finds it well-formed. */
export async function libxml2WellFormed(documents: readonly Uint8Array[]): Promise<boolean[]> {
  const files = names(documents);
  const contents = new Map(files.map((file, index) => [file, documents[index] as Uint8Array]));
  return verdicts(files, (batch) => runXmllintWasm(batch, contents));
}

/** For each document, true when the xmllint program finds it well-formed. */
export async function xmllintWellFormed(documents: readonly Uint8Array[]): Promise<boolean[]> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'xmllint-oracle-'));
  try {
    const files = names(documents).map((file) => path.join(directory, file));
    await Promise.all(documents.map((document, index) => writeFile(files[index] as string, document)));
    return await verdicts(files, runXmllint);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
