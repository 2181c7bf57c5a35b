/**
 * XML bytes -> typed, validated Request (or a request-level error).
 * Pure: no I/O. The document is read by saxes, a conforming XML 1.0 parser: anything that
 * is not a well-formed document (content after the root, "--" in a comment, a misplaced
 * declaration, "]]>" in text, ...) is refused whole before any item is looked at.
 * Entities beyond XML's five are never expanded; a DOCTYPE is refused before the parser
 * sees it, so entity-expansion attacks cannot start.
 */
import { SaxesParser } from 'saxes';
import type {
  AddShares, Attributes, CreateAccount, CreateGroup, CreateRequest, InvalidCreateItem,
  Request, TransactionItem, TransactionsRequest,
} from './requests.js';
import {
  accountIdProblem, amountProblem, balanceProblem, isPossibleOrderId,
  limitProblem, sharesProblem, symbolProblem,
} from './fields.js';
import { hasIllegalXmlCharacter } from './xml-characters.js';

/** More children than this in one request is refused whole (each child costs a transaction). */
export const MAX_ITEMS_PER_REQUEST = 10_000;
const MAX_NESTING = 16;

export type RequestParseError = { kind: 'error'; message: string };

/** One element of the document: its attributes, child elements, and text (CDATA included). */
type XmlElement = { name: string; attributes: Record<string, string>; children: XmlElement[]; text: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const DOCTYPE_OR_ENTITY = /<!\s*(DOCTYPE|ENTITY)/i;
const UTF8_LABEL = /^utf-?8$/i;
/** Encodings that read an ASCII-only body exactly as UTF-8 does. */
const ASCII_COMPATIBLE_LABEL = /^(us-ascii|iso-8859-1)$/i;

/** Reasons may quote the input; a huge bad request must not get a huge reply. */
const MAX_REASON_LENGTH = 200;

function fail(message: string): RequestParseError {
  return { kind: 'error', message: message.length > MAX_REASON_LENGTH ? `${message.slice(0, MAX_REASON_LENGTH)}...` : message };
}

/** Thrown from the parser's handlers to stop reading a document we refuse anyway. */
class Refusal {
  constructor(readonly message: string) {}
}

/**
 * The body is UTF-8 (SPEC). A declaration naming another encoding would make a conforming
 * parser read other characters, so it is accepted only where that cannot happen.
 */
function encodingProblem(encoding: string | undefined, body: Uint8Array): string | null {
  if (encoding === undefined || UTF8_LABEL.test(encoding)) return null;
  // Raw bytes, not decoded text: a UTF-8 byte order mark is not ASCII either.
  if (ASCII_COMPATIBLE_LABEL.test(encoding) && body.every((byte) => byte < 0x80)) return null;
  return `request must be UTF-8: declared encoding "${shortName(encoding)}" is not accepted`;
}

/** saxes reports "line:column: what." */
function malformed(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const match = /^(\d+):(\d+): (.*?)\.?$/s.exec(message);
  if (!match) return `malformed XML: ${message}`;
  const what = match[3] === 'malformed character entity'
    ? 'character reference malformed or to a character not allowed in XML'
    : match[3] as string;
  return `malformed XML: ${what} (line ${match[1]}, column ${match[2]})`;
}

/** Decodes, checks that the body is one well-formed XML 1.0 document, and builds its tree. */
function readDocument(body: Uint8Array): XmlElement | RequestParseError {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return fail('request is not valid UTF-8');
  }
  if (text.trim().length === 0) return fail('request is empty');
  if (DOCTYPE_OR_ENTITY.test(text)) return fail('DOCTYPE and entity declarations are not allowed');
  // Raw, these are illegal anywhere, comments included (references are checked by the parser,
  // which knows where a reference is one).
  if (hasIllegalXmlCharacter(text)) return fail('malformed XML: character not allowed in XML');
  // A declared version 1.1 must not switch the parser to 1.1's character rules.
  const parser = new SaxesParser({ xmlns: false, defaultXMLVersion: '1.0', forceXMLVersion: true });
  const open: XmlElement[] = [];
  let root: XmlElement | null = null;
  const addText = (chunk: string): void => {
    const current = open[open.length - 1];
    if (current) current.text += chunk;
  };
  parser.on('xmldecl', (declaration) => {
    const problem = encodingProblem(declaration.encoding, body);
    if (problem) throw new Refusal(problem);
  });
  parser.on('doctype', () => {
    throw new Refusal('DOCTYPE and entity declarations are not allowed');
  });
  parser.on('opentag', (tag) => {
    if (open.length >= MAX_NESTING) throw new Refusal(`request nests elements deeper than ${MAX_NESTING} levels`);
    const element: XmlElement = { name: tag.name, attributes: tag.attributes, children: [], text: '' };
    const parent = open[open.length - 1];
    if (parent) parent.children.push(element);
    else root = element;
    open.push(element);
  });
  parser.on('closetag', () => {
    open.pop();
  });
  parser.on('text', addText);
  parser.on('cdata', addText);
  try {
    parser.write(text).close();
  } catch (error) {
    return fail(error instanceof Refusal ? error.message : malformed(error));
  }
  // close() has thrown unless exactly one root element was read and closed.
  return root ?? fail('malformed XML: no root element');
}

/** True when the bytes hold one complete, well-formed document (used for overstated lengths). */
export function isCompleteDocument(body: Uint8Array): boolean {
  // Cheap test first: a complete document's last non-blank byte is '>'.
  let last = body.length - 1;
  while (last >= 0 && (body[last] === 0x20 || body[last] === 0x0a || body[last] === 0x0d || body[last] === 0x09)) last--;
  if (last < 0 || body[last] !== 0x3e) return false;
  return !isParseError(readDocument(body));
}

function isParseError(value: XmlElement | RequestParseError): value is RequestParseError {
  return (value as RequestParseError).kind === 'error';
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
function hasText(node: XmlElement): boolean {
  return node.text.trim().length > 0;
}

function unexpectedAttribute(attributes: Record<string, string>, allowed: readonly string[]): string | null {
  const extra = Object.keys(attributes).find((name) => !allowed.includes(name));
  return extra === undefined ? null : `unexpected attribute '${shortName(extra)}'`;
}

export function parseRequest(body: Uint8Array): Request | RequestParseError {
  const root = readDocument(body);
  if (isParseError(root)) return root;
  if (root.name === 'create') return parseCreate(root);
  if (root.name === 'transactions') return parseTransactions(root);
  return fail(`unknown root element '${shortName(root.name)}': expected <create> or <transactions>`);
}

function countItems(root: XmlElement): number {
  let count = 0;
  for (const child of root.children) {
    count += child.name === 'symbol' ? Math.max(1, child.children.length) : 1;
  }
  return count;
}

function parseCreate(root: XmlElement): CreateRequest | RequestParseError {
  const rootProblem = unexpectedAttribute(root.attributes, []);
  if (rootProblem) return fail(`<create>: ${rootProblem}`);
  if (countItems(root) > MAX_ITEMS_PER_REQUEST) {
    return fail(`request has more than ${MAX_ITEMS_PER_REQUEST} items`);
  }
  const groups: CreateGroup[] = [];
  for (const child of root.children) {
    const name = child.name;
    const attributes = child.attributes;
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

function parseCreateAccount(node: XmlElement, attributes: Record<string, string>): CreateAccount | InvalidCreateItem {
  const echo = echoOf(attributes, ['id']);
  const problem = accountIdProblem(attributes.id)
    ?? balanceProblem(attributes.balance)
    ?? unexpectedAttribute(attributes, ['id', 'balance'])
    ?? (node.children.length > 0 ? '<account> in <create> takes no children' : null)
    ?? (hasText(node) ? '<account> in <create> takes no text' : null);
  if (problem) return { kind: 'invalid', echo, reason: problem };
  return { kind: 'account', accountId: attributes.id as string, balance: attributes.balance as string };
}

function parseSymbol(node: XmlElement, attributes: Record<string, string>): CreateGroup {
  const sym = attributes.sym;
  const symProblem = symbolProblem(sym) ?? unexpectedAttribute(attributes, ['sym']);
  const children = node.children;
  if (children.length === 0) {
    return {
      kind: 'symbol',
      sym: null,
      items: [{ kind: 'invalid', echo: echoOf(attributes, ['sym']), reason: symProblem ?? '<symbol> needs at least one <account>' }],
    };
  }
  const items: Array<AddShares | InvalidCreateItem> = children.map((child) => {
    const childName = child.name;
    const childAttributes = child.attributes;
    const echo: Attributes = [...echoOf(attributes, ['sym']), ...echoOf(childAttributes, ['id'])];
    if (childName !== 'account') return { kind: 'invalid', echo, reason: `unknown element <${shortName(childName)}> in <symbol>` };
    const shares = child.text.trim();
    const problem = symProblem
      ?? accountIdProblem(childAttributes.id)
      ?? unexpectedAttribute(childAttributes, ['id'])
      ?? (child.children.length > 0 ? '<account> in <symbol> holds only a number' : null)
      ?? sharesProblem(shares);
    if (problem) return { kind: 'invalid', echo, reason: problem };
    return { kind: 'shares', sym: sym as string, accountId: childAttributes.id as string, shares };
  });
  return { kind: 'symbol', sym: symProblem ? null : (sym as string), items };
}

function parseTransactions(root: XmlElement): TransactionsRequest | RequestParseError {
  const attributes = root.attributes;
  const accountId = attributes.id;
  const idProblem = accountIdProblem(accountId) ?? unexpectedAttribute(attributes, ['id']);
  const children = root.children;
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

function parseTransactionItem(node: XmlElement): TransactionItem {
  const name = node.name;
  const attributes = node.attributes;
  const nested = node.children.length > 0 ? `<${shortName(name)}> takes no children`
    : hasText(node) ? `<${shortName(name)}> takes no text` : null;
  if (name === 'order') {
    const echo = echoOf(attributes, ORDER_ATTRIBUTES);
    const problem = symbolProblem(attributes.sym)
      ?? amountProblem(attributes.amount)
      ?? limitProblem(attributes.limit)
      ?? unexpectedAttribute(attributes, ORDER_ATTRIBUTES)
      ?? nested;
    if (problem) return { kind: 'invalid', echo, reason: problem };
    return {
      kind: 'order',
      sym: attributes.sym as string,
      amount: attributes.amount as string,
      limit: attributes.limit as string,
      echo,
    };
  }
  if (name === 'query' || name === 'cancel') {
    const echo = echoOf(attributes, ['id']);
    const problem = (attributes.id === undefined ? 'missing id' : null)
      ?? unexpectedAttribute(attributes, ['id'])
      ?? nested;
    if (problem) return { kind: 'invalid', echo, reason: problem };
    // A malformed id is answered exactly like an unknown one (by the handler), so ids cannot be probed.
    const orderId = isPossibleOrderId(attributes.id) ? (attributes.id as string) : null;
    return { kind: name, orderId, echo };
  }
  return { kind: 'invalid', echo: [], reason: `unknown element <${shortName(name)}> in <transactions>` };
}
