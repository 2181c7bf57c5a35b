/** Characters XML 1.0 forbids (outside the Char production), used by both parse and render. */
const ILLEGAL = '[\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]';

export function hasIllegalXmlCharacter(text: string): boolean {
  return new RegExp(ILLEGAL).test(text);
}

/** Replaces forbidden characters with U+FFFD so a reply quoting them stays well-formed. */
export function withLegalXmlCharacters(text: string): string {
  return text.replace(new RegExp(ILLEGAL, 'g'), '\uFFFD');
}

export function isLegalXmlCodePoint(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd
    || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
}
