/**
 * The operator token check for private endpoints. Compared in constant time:
 * both sides are hashed first (SHA-256), so the comparison takes as long
 * whatever the presented token's length or how many of its leading characters
 * are right, and timingSafeEqual compares the two digests without an early exit.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return match?.[1] ?? null;
}

/** Whether the header carries exactly the expected token. */
export function tokenMatches(expected: string, authorization: string | undefined): boolean {
  const presented = bearerToken(authorization);
  // A missing token is compared too (against nothing), so that case costs the same.
  const equal = timingSafeEqual(digest(expected), digest(presented ?? ''));
  return presented !== null && equal;
}
