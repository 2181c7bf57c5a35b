/**
 * The reply renderer as first written, on xmlbuilder2 (a full DOM per reply).
 * server/protocol/render-reply.ts replaced it on the hot path because it cost
 * 12-15 µs per reply against about 1 µs; it stays here as the oracle
 * the fuzz tests compare the fast renderer with, byte for byte.
 */
import { create } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import type { ReplyElement } from '../../server/protocol/replies.js';
import { withLegalXmlCharacters } from '../../server/protocol/xml-characters.js';

const MARKER = '\uFFFE';
const REFERENCE: Record<string, string> = { t: '&#9;', n: '&#10;', r: '&#13;' };

function marked(text: string, characters: RegExp): string {
  return text.replace(
    characters,
    (character) => `${MARKER}${character === '\t' ? 't' : character === '\n' ? 'n' : 'r'}`,
  );
}

function append(parent: XMLBuilder, reply: ReplyElement): void {
  const node = parent.ele(reply.name);
  for (const [name, value] of reply.attributes) node.att(name, marked(withLegalXmlCharacters(value), /[\t\n\r]/g));
  if (reply.text !== undefined) node.txt(marked(withLegalXmlCharacters(reply.text), /\r/g));
  for (const child of reply.children ?? []) append(node, child);
}

export function referenceRenderResults(results: readonly ReplyElement[]): string {
  const document = create({ version: '1.0', encoding: 'UTF-8' });
  const root = document.ele('results');
  for (const result of results) append(root, result);
  return document
    .end({ prettyPrint: true })
    .replace(/\uFFFE([tnr])/g, (_, letter: string) => REFERENCE[letter] as string);
}
