/** Characters XML 1.0 forbids (outside the Char production), used by both parse and render. */
const ILLEGAL = '[\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]';

const ILLEGAL_CHARACTER = new RegExp(ILLEGAL);
/** Global, for replace() only (which resets lastIndex; test() with it would not). */
const ILLEGAL_CHARACTERS = new RegExp(ILLEGAL, 'g');

export function hasIllegalXmlCharacter(text: string): boolean {
  return ILLEGAL_CHARACTER.test(text);
}

/** Replaces forbidden characters with U+FFFD so a reply quoting them stays well-formed. */
export function withLegalXmlCharacters(text: string): string {
  return text.replace(ILLEGAL_CHARACTERS, '\uFFFD');
}

export function isLegalXmlCodePoint(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}
