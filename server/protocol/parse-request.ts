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
  AddShares,
  Attributes,
  CreateAccount,
  CreateGroup,
  CreateRequest,
  InvalidCreateItem,
  Request,
  TransactionItem,
  TransactionsRequest,
} from './requests.js';
import {
  accountIdProblem,
  amountProblem,
  balanceProblem,
  isPossibleOrderId,
  limitProblem,
  sharesProblem,
  symbolProblem,
} from './fields.js';
import { hasIllegalXmlCharacter } from './xml-characters.js';

/**
 * The shape of one request is bounded while it is read, so that no document within
 * MAX_REQUEST_BYTES makes the parser (which runs on the event loop, while every other
 * client waits) or the handlers do much more than a normal request of that size. A
 * document past any bound is refused whole, as soon as the parser reaches the excess.
 * (Measured before these bounds: 90,000 attributes on one element took 0.27-0.8 s to
 * parse, 260,000 empty elements nested in one order 0.6 s; see docs/protocol.md.)
 */
/** More items than this in one request is refused whole (each item costs a transaction). */
export const MAX_ITEMS_PER_REQUEST = 10_000;
/**
 * Elements below the root: two per item is the most a valid request needs (a <symbol>
 * holding one <account>), so only elements that are errors anyway are turned away.
 */
export const MAX_ELEMENTS_PER_REQUEST = 2 * MAX_ITEMS_PER_REQUEST;
/** Attributes of one element: ours take at most 3; more are errors anyway. */
export const MAX_ATTRIBUTES_PER_ELEMENT = 16;
/** Elements nested in the root and in each other: ours go 3 deep. */
export const MAX_NESTING = 16;

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
  return {
    kind: 'error',
    message: message.length > MAX_REASON_LENGTH ? `${message.slice(0, MAX_REASON_LENGTH)}...` : message,
  };
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
  const what =
    match[3] === 'malformed character entity'
      ? 'character reference malformed or to a character not allowed in XML'
      : (match[3] as string);
  return `malformed XML: ${what} (line ${match[1]}, column ${match[2]})`;
}

/**
 * Characters the parser reads between two pauses of readDocumentSteps: about 10 ms of
 * parsing on this machine, so a large request lets other clients' work run in between.
 */
const SLICE_CHARACTERS = 64 * 1024;

/**
 * Decodes, checks that the body is one well-formed XML 1.0 document, and builds its tree.
 * Pauses (yields) after each slice of SLICE_CHARACTERS; readDocument runs it through.
 */
function* readDocumentSteps(body: Uint8Array): Generator<void, XmlElement | RequestParseError> {
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
  // Counted as the parser goes, so a document past a bound costs no more than the bound.
  let elements = 0;
  let attributes = 0;
  let items = 0;
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
  parser.on('opentagstart', () => {
    if (open.length >= MAX_NESTING) throw new Refusal(`request nests elements deeper than ${MAX_NESTING} levels`);
    if (open.length > 0 && ++elements > MAX_ELEMENTS_PER_REQUEST) {
      throw new Refusal(`request has more than ${MAX_ELEMENTS_PER_REQUEST} elements below its root`);
    }
    items += itemsAdded(open);
    if (items > MAX_ITEMS_PER_REQUEST) throw new Refusal(`request has more than ${MAX_ITEMS_PER_REQUEST} items`);
    attributes = 0;
  });
  parser.on('attribute', () => {
    if (++attributes > MAX_ATTRIBUTES_PER_ELEMENT) {
      throw new Refusal(`an element has more than ${MAX_ATTRIBUTES_PER_ELEMENT} attributes`);
    }
  });
  parser.on('opentag', (tag) => {
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
    // saxes carries a character split between two writes (a CR, half a surrogate pair) over.
    for (let start = 0; start < text.length; start += SLICE_CHARACTERS) {
      parser.write(text.slice(start, start + SLICE_CHARACTERS));
      if (start + SLICE_CHARACTERS < text.length) yield;
    }
    parser.close();
  } catch (error) {
    return fail(error instanceof Refusal ? error.message : malformed(error));
  }
  // close() has thrown unless exactly one root element was read and closed.
  return root ?? fail('malformed XML: no root element');
}

function readDocument(body: Uint8Array): XmlElement | RequestParseError {
  const steps = readDocumentSteps(body);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** Lets timers, I/O and other requests run between two slices of a large document. */
function pause(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * How many items an element opening below `open` adds: each child of the
 * root is one, except that a <symbol> in <create> is one per <account> it holds (at least one).
 */
function itemsAdded(open: readonly XmlElement[]): number {
  if (open.length === 1) return 1;
  const [root, parent] = open;
  if (open.length === 2 && root?.name === 'create' && parent?.name === 'symbol' && parent.children.length > 0) return 1;
  return 0;
}

/** True when the bytes hold one complete, well-formed document (used for overstated lengths). */
export function isCompleteDocument(body: Uint8Array): boolean {
  // Cheap test first: a complete document's last non-blank byte is '>'.
  let last = body.length - 1;
  while (last >= 0 && (body[last] === 0x20 || body[last] === 0x0a || body[last] === 0x0d || body[last] === 0x09))
    last--;
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
  return typedRequest(readDocument(body));
}

/**
 * parseRequest, giving the event loop back between slices of a large body: the server's
 * way, so that one client's 1 MiB document does not hold up every other client for the
 * whole of its parse (the same answer as parseRequest, always).
 */
export async function parseRequestInSlices(body: Uint8Array): Promise<Request | RequestParseError> {
  const steps = readDocumentSteps(body);
  for (;;) {
    const step = steps.next();
    if (step.done) return typedRequest(step.value);
    await pause();
  }
}

function typedRequest(root: XmlElement | RequestParseError): Request | RequestParseError {
  if (isParseError(root)) return root;
  if (root.name === 'create') return parseCreate(root);
  if (root.name === 'transactions') return parseTransactions(root);
  return fail(`unknown root element '${shortName(root.name)}': expected <create> or <transactions>`);
}

function parseCreate(root: XmlElement): CreateRequest | RequestParseError {
  const rootProblem = unexpectedAttribute(root.attributes, []);
  if (rootProblem) return fail(`<create>: ${rootProblem}`);
  const groups: CreateGroup[] = [];
  for (const child of root.children) {
    const name = child.name;
    const attributes = child.attributes;
    if (name === 'account') {
      groups.push({ kind: 'account', item: parseCreateAccount(child, attributes) });
    } else if (name === 'symbol') {
      groups.push(parseSymbol(child, attributes));
    } else {
      groups.push({
        kind: 'account',
        item: { kind: 'invalid', echo: [], reason: `unknown element <${shortName(name)}> in <create>` },
      });
    }
  }
  return { kind: 'create', groups };
}

function parseCreateAccount(node: XmlElement, attributes: Record<string, string>): CreateAccount | InvalidCreateItem {
  const echo = echoOf(attributes, ['id']);
  const problem =
    accountIdProblem(attributes.id) ??
    balanceProblem(attributes.balance) ??
    unexpectedAttribute(attributes, ['id', 'balance']) ??
    (node.children.length > 0 ? '<account> in <create> takes no children' : null) ??
    (hasText(node) ? '<account> in <create> takes no text' : null);
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
      items: [
        {
          kind: 'invalid',
          echo: echoOf(attributes, ['sym']),
          reason: symProblem ?? '<symbol> needs at least one <account>',
        },
      ],
    };
  }
  const items: Array<AddShares | InvalidCreateItem> = children.map((child) => {
    const childName = child.name;
    const childAttributes = child.attributes;
    const echo: Attributes = [...echoOf(attributes, ['sym']), ...echoOf(childAttributes, ['id'])];
    if (childName !== 'account')
      return { kind: 'invalid', echo, reason: `unknown element <${shortName(childName)}> in <symbol>` };
    const shares = child.text.trim();
    const problem =
      symProblem ??
      accountIdProblem(childAttributes.id) ??
      unexpectedAttribute(childAttributes, ['id']) ??
      (child.children.length > 0 ? '<account> in <symbol> holds only a number' : null) ??
      sharesProblem(shares);
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
  const nested =
    node.children.length > 0
      ? `<${shortName(name)}> takes no children`
      : hasText(node)
        ? `<${shortName(name)}> takes no text`
        : null;
  if (name === 'order') {
    const echo = echoOf(attributes, ORDER_ATTRIBUTES);
    const problem =
      symbolProblem(attributes.sym) ??
      amountProblem(attributes.amount) ??
      limitProblem(attributes.limit) ??
      unexpectedAttribute(attributes, ORDER_ATTRIBUTES) ??
      nested;
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
    const problem =
      (attributes.id === undefined ? 'missing id' : null) ?? unexpectedAttribute(attributes, ['id']) ?? nested;
    if (problem) return { kind: 'invalid', echo, reason: problem };
    // A malformed id is answered exactly like an unknown one (by the handler), so ids cannot be probed.
    const orderId = isPossibleOrderId(attributes.id) ? (attributes.id as string) : null;
    return { kind: name, orderId, echo };
  }
  return { kind: 'invalid', echo: [], reason: `unknown element <${shortName(name)}> in <transactions>` };
}
