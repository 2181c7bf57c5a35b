/** Reply model -> the `<results>` document, and the two reply framings of SPEC.md. */
import { create } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import { errorElement, type ReplyElement } from './replies.js';
import { withLegalXmlCharacters } from './xml-characters.js';

export type ReplyFraming = 'bare' | 'length';

/** A reply must stay well-formed even when an error message quotes a character XML forbids. */
const legal = withLegalXmlCharacters;

function append(parent: XMLBuilder, reply: ReplyElement): void {
  const node = parent.ele(reply.name);
  for (const [name, value] of reply.attributes) node.att(name, legal(value));
  if (reply.text !== undefined) node.txt(legal(reply.text));
  for (const child of reply.children ?? []) append(node, child);
}

/** Renders one `<results>` document, starting with the XML declaration. */
export function renderResults(results: readonly ReplyElement[]): string {
  const document = create({ version: '1.0', encoding: 'UTF-8' });
  const root = document.ele('results');
  for (const result of results) append(root, result);
  return document.end({ prettyPrint: true });
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
