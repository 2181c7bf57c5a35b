/** Reads reply documents in tests: the root's children as plain objects. */
import { XMLParser } from 'fast-xml-parser';
import { recordReply } from './reply-schema.js';

export type ReplyNode = { name: string; attributes: Record<string, string>; text: string; children: ReplyNode[] };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  ignoreDeclaration: true,
  trimValues: true,
});

function toNode(raw: Record<string, unknown>): ReplyNode | null {
  const name = Object.keys(raw).find((key) => key !== ':@' && key !== '#text');
  if (!name) return null;
  const content = (raw[name] as Array<Record<string, unknown>>) ?? [];
  return {
    name,
    attributes: (raw[':@'] as Record<string, string>) ?? {},
    text: content.map((child) => (typeof child['#text'] === 'string' ? child['#text'] : '')).join(''),
    children: content.map(toNode).filter((node): node is ReplyNode => node !== null),
  };
}

/** The `<results>` children of a reply; throws if the reply is not a `<results>` document. */
export function parseResults(xml: string): ReplyNode[] {
  recordReply(xml);
  if (!xml.startsWith('<?xml')) throw new Error(`reply lacks an XML declaration: ${xml}`);
  const roots = (parser.parse(xml) as Array<Record<string, unknown>>)
    .map(toNode)
    .filter((node): node is ReplyNode => node !== null);
  const root = roots[0];
  if (roots.length !== 1 || !root || root.name !== 'results')
    throw new Error(`reply is not one <results> document: ${xml}`);
  return root.children;
}
