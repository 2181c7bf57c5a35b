/**
 * XML Schema validation for the tests, in process: libxml2 built to WebAssembly (npm package
 * libxml2-wasm), so `npm test` needs no system package for it. Each schema is compiled once;
 * a document costs a parse and a validation, a few hundredths of a millisecond for a reply.
 *
 * Every reply the tests read is checked against schema/replies.xsd: parseResults (xml.ts)
 * records each reply here, and the root hook in hooks.ts validates them all after the whole run.
 * Replies are kept in memory, deduplicated, up to MAX_RECORDED_REPLIES documents and
 * MAX_RECORDED_BYTES in all.
 *
 * validateWithXmllint runs the same check through the xmllint program (Debian libxml2-utils),
 * only for the test that shows both give the same verdicts (tests/unit/schemas.test.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import { ParseOption, XmlDocument, XmlParseError, XmlValidateError, XsdValidator } from 'libxml2-wasm';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { program } from './requirements.js';

export const MAX_RECORDED_REPLIES = 30_000;
export const MAX_RECORDED_BYTES = 128 * 1024 * 1024;
/** Files per xmllint process: each process compiles the schema once, then checks them all. */
const FILES_PER_PROCESS = 300;
const PARALLEL_PROCESSES = Math.max(1, Math.min(4, os.availableParallelism()));
const EXCERPT_CHARS = 1_500;

export const XMLLINT = program('xmllint', 'apt-get install -y libxml2-utils', ['--version']);

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

export type SchemaName = 'requests' | 'replies';
export type ValidationFailure = { index: number; document: string; errors: string[] };

/** xmllint --nonet: never fetch anything from the network while parsing. */
const PARSE_OPTIONS = ParseOption.XML_PARSE_NONET;

const validators = new Map<SchemaName, XsdValidator>();

/** The compiled schema, compiled on first use and kept for the whole run. */
function validatorFor(name: SchemaName): XsdValidator {
  let validator = validators.get(name);
  if (!validator) {
    const file = schemaPath(name);
    // The schema document and its validator live for the whole run: never disposed.
    const schema = XmlDocument.fromString(readFileSync(file, 'utf8'), { url: file, option: PARSE_OPTIONS });
    try {
      validator = XsdValidator.fromDoc(schema);
    } catch (error) {
      throw new Error(`${file} does not compile: ${(error as Error).message}`);
    }
    validators.set(name, validator);
  }
  return validator;
}

/** libxml2's messages, one a line, each with its line number: "line 3: Element 'open', attribute ...". */
function messages(error: XmlParseError | XmlValidateError): string[] {
  const lines = error.details.map((detail) => `line ${detail.line}: ${detail.message.trim()}`);
  return lines.length > 0 ? lines : [error.message.trim()];
}

/** Why the document is not valid (or not well-formed), or null when it is valid. */
function check(validator: XsdValidator, document: string): string[] | null {
  let parsed: XmlDocument;
  try {
    parsed = XmlDocument.fromString(document, { option: PARSE_OPTIONS });
  } catch (error) {
    if (error instanceof XmlParseError) return ['not well-formed:', ...messages(error)];
    throw error;
  }
  try {
    validator.validate(parsed);
    return null;
  } catch (error) {
    if (error instanceof XmlValidateError) return messages(error);
    throw error;
  } finally {
    parsed.dispose();
  }
}

/**
 * Validates documents against schema/<name>.xsd, in process. Returns one entry per document that
 * is not valid (or not well-formed), with libxml2's messages; an empty array when all are valid.
 * Throws if the schema does not compile.
 */
export function validateDocuments(name: SchemaName, documents: readonly string[]): ValidationFailure[] {
  if (documents.length === 0) return [];
  const validator = validatorFor(name);
  const failures: ValidationFailure[] = [];
  documents.forEach((document, index) => {
    const errors = check(validator, document);
    if (errors) failures.push({ index, document, errors });
  });
  return failures;
}

type RunResult = { code: number | null; output: string };

function run(command: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

/**
 * The same as validateDocuments, by the xmllint program: `xmllint --noout --nonet --schema`,
 * a few hundred files per process. Throws if xmllint cannot run or the schema does not compile.
 */
export async function validateWithXmllint(
  name: SchemaName,
  documents: readonly string[],
): Promise<ValidationFailure[]> {
  if (documents.length === 0) return [];
  const missing = XMLLINT.missing();
  if (missing) throw new Error(`${missing}; provide it with: ${XMLLINT.provide}`);
  const schema = schemaPath(name);
  const directory = await mkdtemp(path.join(os.tmpdir(), `xsd-${name}-`));
  try {
    const files = documents.map((_, index) => path.join(directory, `${String(index).padStart(6, '0')}.xml`));
    // Written a few at a time: 20,000 files opened at once exhaust the file descriptors.
    const write = pLimit(32);
    await Promise.all(
      documents.map((document, index) => write(() => writeFile(files[index] as string, document, 'utf8'))),
    );
    const chunks: number[][] = [];
    for (let start = 0; start < documents.length; start += FILES_PER_PROCESS) {
      chunks.push(
        Array.from({ length: Math.min(FILES_PER_PROCESS, documents.length - start) }, (_, offset) => start + offset),
      );
    }
    const failures: ValidationFailure[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const chunk = chunks[next++] as number[];
        failures.push(
          ...(await validateChunk(
            schema,
            chunk.map((index) => files[index] as string),
            chunk,
            documents,
          )),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PROCESSES, chunks.length) }, worker));
    return failures.sort((a, b) => a.index - b.index);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function validateChunk(
  schema: string,
  files: string[],
  indexes: number[],
  documents: readonly string[],
): Promise<ValidationFailure[]> {
  const { code, output } = await run('xmllint', ['--noout', '--nonet', '--schema', schema, ...files]);
  // Exit codes: 0 all valid, 1 a file is not well-formed, 3 or 4 a file is not valid; 5 is a broken schema.
  if (code === 5 || /failed to compile/.test(output)) throw new Error(`${schema} does not compile:\n${output}`);
  const lines = output.split('\n');
  const failures: ValidationFailure[] = [];
  files.forEach((file, position) => {
    if (lines.includes(`${file} validates`)) return;
    const errors = lines.filter((line) => line.startsWith(`${file}:`) || line === `${file} fails to validate`);
    const index = indexes[position] as number;
    failures.push({
      index,
      document: documents[index] as string,
      errors: errors.length > 0 ? errors : [`no verdict from xmllint (exit ${code})`],
    });
  });
  if (failures.length === 0 && code !== 0)
    throw new Error(`xmllint exited ${code} although every file validated:\n${output}`);
  return failures;
}

function excerpt(document: string): string {
  return document.length <= EXCERPT_CHARS
    ? document
    : `${document.slice(0, EXCERPT_CHARS)}\n... (${document.length - EXCERPT_CHARS} more characters)`;
}

/** Validates every recorded reply against schema/replies.xsd; one message per invalid reply. */
export function validateRecordedReplies(): string[] {
  return validateDocuments('replies', [...recorded]).map(
    (failure) => `${failure.errors.join('\n')}\n--- reply:\n${excerpt(failure.document)}`,
  );
}
