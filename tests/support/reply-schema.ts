/**
 * Every reply the tests read is checked against schema/replies.xsd with libxml2's xmllint.
 *
 * parseResults (xml.ts) records each reply here; the root hook in hooks.ts validates them all
 * once, after the whole run, so the cost is one batch at the end (a few xmllint processes,
 * each given a few hundred files) rather than a process per reply. Replies are kept in memory,
 * deduplicated, up to MAX_RECORDED_REPLIES documents and MAX_RECORDED_BYTES in all.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAX_RECORDED_REPLIES = 30_000;
export const MAX_RECORDED_BYTES = 128 * 1024 * 1024;
/** Files per xmllint process: each process compiles the schema once, then checks them all. */
const FILES_PER_PROCESS = 300;
const PARALLEL_PROCESSES = Math.max(1, Math.min(4, os.availableParallelism()));
const EXCERPT_CHARS = 1_500;

export const INSTALL_HINT = 'install libxml2-utils (Debian/Ubuntu: apt-get update && apt-get install -y libxml2-utils)';

const recorded = new Set<string>();
let recordedChars = 0;
let notRecorded = 0;

/** Keeps one reply for validation at the end of the run (duplicates are kept once). */
export function recordReply(xml: string): void {
  if (recorded.has(xml)) return;
  if (recorded.size >= MAX_RECORDED_REPLIES || recordedChars + xml.length > MAX_RECORDED_BYTES) {
    notRecorded++;
    return;
  }
  recorded.add(xml);
  recordedChars += xml.length;
}

export function recordedReplyStats(): { replies: number; chars: number; notRecorded: number } {
  return { replies: recorded.size, chars: recordedChars, notRecorded };
}

/** The project's schema/ folder, found from this module (tests/support or dist/tests/support). */
function schemaDirectory(): string {
  let directory = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(directory, 'schema', 'replies.xsd');
    if (existsSync(candidate)) return path.dirname(candidate);
    const parent = path.dirname(directory);
    if (parent === directory) throw new Error('schema/replies.xsd not found above tests/support');
    directory = parent;
  }
}

export function schemaPath(name: 'requests' | 'replies'): string {
  return path.join(schemaDirectory(), `${name}.xsd`);
}

type RunResult = { code: number | null; output: string };

function run(command: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT' ? new Error(`xmllint is not installed: ${INSTALL_HINT}`) : error);
    });
    child.on('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

/** Throws, saying how to install it, if xmllint cannot be run. */
export async function requireXmllint(): Promise<void> {
  const { code, output } = await run('xmllint', ['--version']);
  if (code !== 0 || !/libxml/.test(output)) throw new Error(`xmllint does not work (exit ${code}): ${output.trim()}; ${INSTALL_HINT}`);
}

export type ValidationFailure = { index: number; document: string; errors: string[] };

/**
 * Validates documents against schema/<name>.xsd. Returns one entry per document that is not
 * valid (or not well-formed), with xmllint's messages; an empty array when all are valid.
 * Throws if xmllint is missing or the schema does not compile.
 */
export async function validateDocuments(name: 'requests' | 'replies', documents: readonly string[]): Promise<ValidationFailure[]> {
  if (documents.length === 0) return [];
  await requireXmllint();
  const schema = schemaPath(name);
  const directory = await mkdtemp(path.join(os.tmpdir(), `xsd-${name}-`));
  try {
    const files = documents.map((_, index) => path.join(directory, `${String(index).padStart(6, '0')}.xml`));
    // Written a few at a time: 20,000 files opened at once exhaust the file descriptors.
    const write = pLimit(32);
    await Promise.all(documents.map((document, index) => write(() => writeFile(files[index] as string, document, 'utf8'))));
    const chunks: number[][] = [];
    for (let start = 0; start < documents.length; start += FILES_PER_PROCESS) {
      chunks.push(Array.from({ length: Math.min(FILES_PER_PROCESS, documents.length - start) }, (_, offset) => start + offset));
    }
    const failures: ValidationFailure[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const chunk = chunks[next++] as number[];
        failures.push(...(await validateChunk(schema, chunk.map((index) => files[index] as string), chunk, documents)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PROCESSES, chunks.length) }, worker));
    return failures.sort((a, b) => a.index - b.index);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function validateChunk(schema: string, files: string[], indexes: number[], documents: readonly string[]): Promise<ValidationFailure[]> {
  const { code, output } = await run('xmllint', ['--noout', '--nonet', '--schema', schema, ...files]);
  // Exit codes: 0 all valid, 1 a file is not well-formed, 3 or 4 a file is not valid; 5 is a broken schema.
  if (code === 5 || /failed to compile/.test(output)) throw new Error(`${schema} does not compile:\n${output}`);
  const lines = output.split('\n');
  const failures: ValidationFailure[] = [];
  files.forEach((file, position) => {
    if (lines.includes(`${file} validates`)) return;
    const errors = lines.filter((line) => line.startsWith(`${file}:`) || line === `${file} fails to validate`);
    const index = indexes[position] as number;
    failures.push({ index, document: documents[index] as string, errors: errors.length > 0 ? errors : [`no verdict from xmllint (exit ${code})`] });
  });
  if (failures.length === 0 && code !== 0) throw new Error(`xmllint exited ${code} although every file validated:\n${output}`);
  return failures;
}

function excerpt(document: string): string {
  return document.length <= EXCERPT_CHARS ? document : `${document.slice(0, EXCERPT_CHARS)}\n... (${document.length - EXCERPT_CHARS} more characters)`;
}

/** Validates every recorded reply against schema/replies.xsd; one message per invalid reply. */
export async function validateRecordedReplies(): Promise<string[]> {
  const replies = [...recorded];
  const failures = await validateDocuments('replies', replies);
  return failures.map((failure) => {
    // xmllint names the temporary file; the reply itself follows, so drop the path.
    const errors = failure.errors.map((line) => line.replace(/^\S+\.xml(?=[: ])/, 'reply'));
    return `${errors.join('\n')}\n--- reply:\n${excerpt(failure.document)}`;
  });
}
