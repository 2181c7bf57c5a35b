/** Reply model -> the `<results>` document, and the two reply framings of SPEC.md. */
import { create } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import { errorElement, type ReplyElement } from './replies.js';
import { withLegalXmlCharacters } from './xml-characters.js';

export type ReplyFraming = 'bare' | 'length';

/** A reply must stay well-formed even when an error message quotes a character XML forbids. */
const legal = withLegalXmlCharacters;

/**
 * A parser turns a raw TAB, LF or CR in an attribute (and a raw CR in text) into
 * a space or LF, so an echo must carry them as character references. xmlbuilder2
 * writes them raw, so they travel as U+FFFE markers (XML forbids U+FFFE, and
 * legal() has already removed any real one) and become references after rendering.
 */
const MARKER = '\uFFFE';
const REFERENCE: Record<string, string> = { t: '&#9;', n: '&#10;', r: '&#13;' };

function marked(text: string, characters: RegExp): string {
  return text.replace(characters, (character) => `${MARKER}${character === '\t' ? 't' : character === '\n' ? 'n' : 'r'}`);
}

function append(parent: XMLBuilder, reply: ReplyElement): void {
  const node = parent.ele(reply.name);
  for (const [name, value] of reply.attributes) node.att(name, marked(legal(value), /[\t\n\r]/g));
  if (reply.text !== undefined) node.txt(marked(legal(reply.text), /\r/g));
  for (const child of reply.children ?? []) append(node, child);
}

/** Renders one `<results>` document, starting with the XML declaration. */
export function renderResults(results: readonly ReplyElement[]): string {
  const document = create({ version: '1.0', encoding: 'UTF-8' });
  const root = document.ele('results');
  for (const result of results) append(root, result);
  return document.end({ prettyPrint: true }).replace(/\uFFFE([tnr])/g, (_, letter: string) => REFERENCE[letter] as string);
}

/** A request-level failure: `<results><error>why</error></results>`. */
export function renderRequestError(reason: string): string {
  return renderResults([errorElement([], reason)]);
}

/** Frames a rendered reply for the wire: bare is the document alone; length prefixes its byte count. */
export function frameReply(xml: string, framing: ReplyFraming): Buffer {
  const body = Buffer.from(xml, 'utf8');
  if (framing === 'bare') return body;
  return Buffer.concat([Buffer.from(`${body.length}\n`, 'ascii'), body]);
}
