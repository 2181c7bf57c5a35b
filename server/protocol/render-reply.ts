/**
 * Reply model -> the `<results>` document (framing it for the wire is protocol/framing.ts).
 *
 * Written out directly rather than through a DOM builder: the reply vocabulary
 * is fixed and small, and xmlbuilder2 cost 12-15 µs per reply against about
 * 1 µs here. The output is byte-identical to xmlbuilder2's pretty
 * print, which the fuzz tests check against it (tests/support/reference-render.ts).
 */
import type { Problem } from '../errors.js';
import { errorElement, type ReplyElement } from './replies.js';
import { withLegalXmlCharacters } from './xml-characters.js';

const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

/**
 * A parser turns a raw TAB, LF or CR in an attribute (and a raw CR in text) into
 * a space or LF, so an echo carries them as character references. Forbidden
 * characters were already replaced, so a reply quoting them stays well-formed.
 */
const ATTRIBUTE_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};
const TEXT_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' };

function escapeAttribute(value: string): string {
  return withLegalXmlCharacters(value).replace(/[&<>"\t\n\r]/g, (character) => ATTRIBUTE_ESCAPES[character] as string);
}

function escapeText(value: string): string {
  return withLegalXmlCharacters(value).replace(/[&<>\r]/g, (character) => TEXT_ESCAPES[character] as string);
}

/**
 * Pretty print: an element with nothing in it closes itself, one with only text
 * keeps it inline, anything else puts each child (text included) on its own line.
 */
function write(reply: ReplyElement, indent: string, out: string[]): void {
  let open = `${indent}<${reply.name}`;
  for (const [name, value] of reply.attributes) open += ` ${name}="${escapeAttribute(value)}"`;
  const text = reply.text === undefined || reply.text === '' ? null : escapeText(reply.text);
  const children = reply.children ?? [];
  if (children.length === 0) {
    out.push(text === null ? `${open}/>` : `${open}>${text}</${reply.name}>`);
    return;
  }
  out.push(`${open}>`);
  const inner = `${indent}  `;
  if (text !== null) out.push(`${inner}${text}`);
  for (const child of children) write(child, inner, out);
  out.push(`${indent}</${reply.name}>`);
}

/** Renders one `<results>` document, starting with the XML declaration. */
export function renderResults(results: readonly ReplyElement[]): string {
  if (results.length === 0) return `${DECLARATION}\n<results/>`;
  const out = [DECLARATION, '<results>'];
  for (const result of results) write(result, '  ', out);
  out.push('</results>');
  return out.join('\n');
}

/** A request-level failure: `<results><error>why</error></results>`. */
export function renderRequestError(problem: Problem): string {
  return renderResults([errorElement([], problem)]);
}
