/**
 * XML bytes -> typed, validated Request (or a request-level error).
 * Pure: no I/O. Entities beyond XML's five are never expanded; a DOCTYPE is
 * refused before the parser sees it, so entity-expansion attacks cannot start.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { EntityDecoder } from '@nodable/entities';
import type {
  AddShares, Attributes, CreateAccount, CreateGroup, CreateRequest, InvalidCreateItem,
  Request, TransactionItem, TransactionsRequest,
} from './requests.js';
import {
  accountIdProblem, amountProblem, balanceProblem, isPossibleOrderId,
  limitProblem, sharesProblem, symbolProblem,
} from './fields.js';
import { hasIllegalXmlCharacter, isLegalXmlCodePoint } from './xml-characters.js';

/** More children than this in one request is refused whole (each child costs a transaction). */
export const MAX_ITEMS_PER_REQUEST = 10_000;
const MAX_NESTING = 16;

export type RequestParseError = { kind: 'error'; message: string };

type XmlNode = { [tag: string]: unknown; ':@'?: Record<string, string> };

/**
 * XML's five entities and character references, for every parse. A declaration of version
 * 1.1 switches it to 1.1's reference rules and nothing switches it back, so each parse
 * starts it at 1.0 again (parseDocument).
 */
const entityDecoder = new EntityDecoder({ numericAllowed: true });

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: false,
  processEntities: true,
  // Named HTML entities never get here (UNDEFINED_ENTITY). Built once: with htmlEntities the
  // parser merged the whole HTML entity table on every parse, about half of a small request's
  // parse time (issue 5).
  entityDecoder,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
  maxNestedTags: MAX_NESTING,
});

const utf8 = new TextDecoder('utf-8', { fatal: true });
const DOCTYPE_OR_ENTITY = /<!\s*(DOCTYPE|ENTITY)/i;
/** Only XML's predefined entities and character references are legal without a DOCTYPE. */
/** fast-xml-parser's validator accepts a raw '<' inside an attribute value; XML does not. */
const RAW_LT_IN_ATTRIBUTE = /=\s*(?:"[^"]*<|'[^']*<)/;
const UNDEFINED_ENTITY = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/;
const CHARACTER_REFERENCE = /&#(x[0-9a-fA-F]+|[0-9]+);/g;

function hasIllegalCharacterReference(text: string): boolean {
  for (const match of text.matchAll(CHARACTER_REFERENCE)) {
    const digits = match[1] as string;
    const code = digits.startsWith('x') ? parseInt(digits.slice(1), 16) : parseInt(digits, 10);
    if (!isLegalXmlCodePoint(code)) return true;
  }
  return false;
}

/** Reasons may quote the input; a huge bad request must not get a huge reply. */
const MAX_REASON_LENGTH = 200;

function fail(message: string): RequestParseError {
  return { kind: 'error', message: message.length > MAX_REASON_LENGTH ? `${message.slice(0, MAX_REASON_LENGTH)}...` : message };
}

/** Decodes and checks well-formedness; returns the text or an error. */
function wellFormedText(body: Uint8Array): string | RequestParseError {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return fail('request is not valid UTF-8');
  }
  if (text.trim().length === 0) return fail('request is empty');
  if (DOCTYPE_OR_ENTITY.test(text)) return fail('DOCTYPE and entity declarations are not allowed');
  if (UNDEFINED_ENTITY.test(text)) return fail('malformed XML: undefined entity or stray "&"');
  if (RAW_LT_IN_ATTRIBUTE.test(text)) return fail('malformed XML: "<" inside an attribute value');
  if (hasIllegalXmlCharacter(text) || hasIllegalCharacterReference(text)) {
    return fail('malformed XML: character not allowed in XML');
  }
  const validation = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (validation !== true) {
    return fail(`malformed XML: ${validation.err.msg} (line ${validation.err.line})`);
  }
  return text;
}

/** True when the bytes hold one complete, well-formed document (used for overstated lengths). */
export function isCompleteDocument(body: Uint8Array): boolean {
  // Cheap test first: a complete document's last non-blank byte is '>'.
  let last = body.length - 1;
  while (last >= 0 && (body[last] === 0x20 || body[last] === 0x0a || body[last] === 0x0d || body[last] === 0x09)) last--;
  if (last < 0 || body[last] !== 0x3e) return false;
  const text = wellFormedText(body);
  return typeof text === 'string' && rootElements(text) !== null;
}

function parseDocument(text: string): XmlNode[] {
  entityDecoder.setXmlVersion(1.0);
  return parser.parse(text) as XmlNode[];
}

function rootElements(text: string): XmlNode[] | null {
  try {
    const nodes = parseDocument(text).filter((node) => elementName(node) !== null);
    return nodes.length === 1 ? nodes : null;
  } catch {
    return null;
  }
}

function elementName(node: XmlNode): string | null {
  for (const key of Object.keys(node)) {
    if (key !== ':@' && key !== '#text') return key;
  }
  return null;
}

function attributesOf(node: XmlNode): Record<string, string> {
  return node[':@'] ?? {};
}

function childElements(node: XmlNode, name: string): XmlNode[] {
  const children = node[name];
  if (!Array.isArray(children)) return [];
  return (children as XmlNode[]).filter((child) => elementName(child) !== null);
}

function textOf(node: XmlNode, name: string): string {
  const children = node[name];
  if (!Array.isArray(children)) return '';
  return (children as XmlNode[])
    .map((child) => (typeof child['#text'] === 'string' ? child['#text'] : ''))
    .join('');
}

/** Picks the named attributes that are present, in the given order, for echoing in a reply. */
function echoOf(attributes: Record<string, string>, names: readonly string[]): Attributes {
  const echo: Array<[string, string]> = [];
  for (const name of names) {
    const value = attributes[name];
    if (value !== undefined) echo.push([name, value]);
  }
  return echo;
}

/** Names quoted in reasons are cut, so a huge name never makes a huge reply. */
function shortName(name: string): string {
  return name.length > 64 ? `${name.slice(0, 64)}...` : name;
}

/** Elements that carry everything in attributes must not hold text either. */
function hasText(node: XmlNode, name: string): boolean {
  return textOf(node, name).trim().length > 0;
}

function unexpectedAttribute(attributes: Record<string, string>, allowed: readonly string[]): string | null {
  const extra = Object.keys(attributes).find((name) => !allowed.includes(name));
  return extra === undefined ? null : `unexpected attribute '${shortName(extra)}'`;
}

export function parseRequest(body: Uint8Array): Request | RequestParseError {
  const text = wellFormedText(body);
  if (typeof text !== 'string') return text;
  const roots = rootElements(text);
  if (roots === null) return fail('malformed XML: expected exactly one root element');
  const root = roots[0] as XmlNode;
  const rootName = elementName(root);
  if (rootName === 'create') return parseCreate(root);
  if (rootName === 'transactions') return parseTransactions(root);
  return fail(`unknown root element '${shortName(rootName ?? '')}': expected <create> or <transactions>`);
}

function countItems(root: XmlNode, name: string): number {
  let count = 0;
  for (const child of childElements(root, name)) {
    const childName = elementName(child) as string;
    count += childName === 'symbol' ? Math.max(1, childElements(child, childName).length) : 1;
  }
  return count;
}

function parseCreate(root: XmlNode): CreateRequest | RequestParseError {
  const rootProblem = unexpectedAttribute(attributesOf(root), []);
  if (rootProblem) return fail(`<create>: ${rootProblem}`);
  if (countItems(root, 'create') > MAX_ITEMS_PER_REQUEST) {
    return fail(`request has more than ${MAX_ITEMS_PER_REQUEST} items`);
  }
  const groups: CreateGroup[] = [];
  for (const child of childElements(root, 'create')) {
    const name = elementName(child) as string;
    const attributes = attributesOf(child);
    if (name === 'account') {
      groups.push({ kind: 'account', item: parseCreateAccount(child, attributes) });
    } else if (name === 'symbol') {
      groups.push(parseSymbol(child, attributes));
    } else {
      groups.push({ kind: 'account', item: { kind: 'invalid', echo: [], reason: `unknown element <${shortName(name)}> in <create>` } });
    }
  }
  return { kind: 'create', groups };
}

function parseCreateAccount(node: XmlNode, attributes: Record<string, string>): CreateAccount | InvalidCreateItem {
  const echo = echoOf(attributes, ['id']);
  const problem = accountIdProblem(attributes['id'])
    ?? balanceProblem(attributes['balance'])
    ?? unexpectedAttribute(attributes, ['id', 'balance'])
    ?? (childElements(node, 'account').length > 0 ? '<account> in <create> takes no children' : null)
    ?? (hasText(node, 'account') ? '<account> in <create> takes no text' : null);
  if (problem) return { kind: 'invalid', echo, reason: problem };
  return { kind: 'account', accountId: attributes['id'] as string, balance: attributes['balance'] as string };
}

function parseSymbol(node: XmlNode, attributes: Record<string, string>): CreateGroup {
  const sym = attributes['sym'];
  const symProblem = symbolProblem(sym) ?? unexpectedAttribute(attributes, ['sym']);
  const children = childElements(node, 'symbol');
  if (children.length === 0) {
    return {
      kind: 'symbol',
      sym: null,
      items: [{ kind: 'invalid', echo: echoOf(attributes, ['sym']), reason: symProblem ?? '<symbol> needs at least one <account>' }],
    };
  }
  const items: Array<AddShares | InvalidCreateItem> = children.map((child) => {
    const childName = elementName(child) as string;
    const childAttributes = attributesOf(child);
    const echo: Attributes = [...echoOf(attributes, ['sym']), ...echoOf(childAttributes, ['id'])];
    if (childName !== 'account') return { kind: 'invalid', echo, reason: `unknown element <${shortName(childName)}> in <symbol>` };
    const shares = textOf(child, 'account').trim();
    const problem = symProblem
      ?? accountIdProblem(childAttributes['id'])
      ?? unexpectedAttribute(childAttributes, ['id'])
      ?? (childElements(child, 'account').length > 0 ? '<account> in <symbol> holds only a number' : null)
      ?? sharesProblem(shares);
    if (problem) return { kind: 'invalid', echo, reason: problem };
    return { kind: 'shares', sym: sym as string, accountId: childAttributes['id'] as string, shares };
  });
  return { kind: 'symbol', sym: symProblem ? null : (sym as string), items };
}

function parseTransactions(root: XmlNode): TransactionsRequest | RequestParseError {
  const attributes = attributesOf(root);
  const accountId = attributes['id'];
  const idProblem = accountIdProblem(accountId) ?? unexpectedAttribute(attributes, ['id']);
  const children = childElements(root, 'transactions');
  if (children.length > MAX_ITEMS_PER_REQUEST) return fail(`request has more than ${MAX_ITEMS_PER_REQUEST} items`);
  return {
    kind: 'transactions',
    accountId: idProblem ? null : (accountId as string),
    accountEcho: echoOf(attributes, ['id']),
    accountIdProblem: idProblem,
    items: children.map(parseTransactionItem),
  };
}

const ORDER_ATTRIBUTES = ['sym', 'amount', 'limit'] as const;

function parseTransactionItem(node: XmlNode): TransactionItem {
  const name = elementName(node) as string;
  const attributes = attributesOf(node);
  const nested = childElements(node, name).length > 0 ? `<${shortName(name)}> takes no children`
    : hasText(node, name) ? `<${shortName(name)}> takes no text` : null;
  if (name === 'order') {
    const echo = echoOf(attributes, ORDER_ATTRIBUTES);
    const problem = symbolProblem(attributes['sym'])
      ?? amountProblem(attributes['amount'])
      ?? limitProblem(attributes['limit'])
      ?? unexpectedAttribute(attributes, ORDER_ATTRIBUTES)
      ?? nested;
    if (problem) return { kind: 'invalid', echo, reason: problem };
    return {
      kind: 'order',
      sym: attributes['sym'] as string,
      amount: attributes['amount'] as string,
      limit: attributes['limit'] as string,
      echo,
    };
  }
  if (name === 'query' || name === 'cancel') {
    const echo = echoOf(attributes, ['id']);
    const problem = (attributes['id'] === undefined ? 'missing id' : null)
      ?? unexpectedAttribute(attributes, ['id'])
      ?? nested;
    if (problem) return { kind: 'invalid', echo, reason: problem };
    // A malformed id is answered exactly like an unknown one (by the handler), so ids cannot be probed.
    const orderId = isPossibleOrderId(attributes['id']) ? (attributes['id'] as string) : null;
    return { kind: name, orderId, echo };
  }
  return { kind: 'invalid', echo: [], reason: `unknown element <${shortName(name)}> in <transactions>` };
}
