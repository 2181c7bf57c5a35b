/**
 * What a test needs that `npm install` cannot provide: a system program (haproxy, xmllint) or
 * a limit of the machine. Where it is missing, the test is pending, never passing, and its title
 * says what it needs and the command that provides it. With REQUIRE_ALL_TESTS=1 (set by
 * .ci/run, which installs everything) a missing requirement fails the test instead, so CI runs
 * every test or goes red; the root hook (hooks.ts) also fails such a run on any other pending test.
 */
import { spawnSync } from 'node:child_process';
import type { Context } from 'mocha';

export const REQUIRE_ALL_TESTS_VARIABLE = 'REQUIRE_ALL_TESTS';

export function requireAllTests(): boolean {
  return process.env[REQUIRE_ALL_TESTS_VARIABLE] === '1';
}

export type Requirement = {
  /** What is needed, as titles name it: "haproxy". */
  what: string;
  /** The command that provides it: "apt-get install -y haproxy". */
  provide: string;
  /** Why it is missing, or null when it is there; asked once, then remembered. */
  missing: () => string | null;
};

function once(check: () => string | null): () => string | null {
  let answer: string | null | undefined;
  return () => (answer === undefined ? (answer = check()) : answer);
}

/** A program found on PATH (or at `binary`) that runs `args` with exit status 0. */
export function program(what: string, provide: string, args: readonly string[], binary = what): Requirement {
  return {
    what,
    provide,
    missing: once(() => {
      const result = spawnSync(binary, args, { encoding: 'utf8', timeout: 10_000 });
      if (result.error)
        return (result.error as NodeJS.ErrnoException).code === 'ENOENT'
          ? `${binary} is not installed`
          : result.error.message;
      if (result.status !== 0)
        return `${binary} ${args.join(' ')} exited ${result.status}: ${`${result.stderr}${result.stdout}`.trim()}`;
      return null;
    }),
  };
}

/** A requirement of the machine itself: `check` returns why it is not met, or null. */
export function condition(what: string, provide: string, check: () => string | null): Requirement {
  return { what, provide, missing: once(check) };
}

function unmet(requirements: readonly Requirement[]): Requirement[] {
  return requirements.filter((requirement) => requirement.missing() !== null);
}

/**
 * The title, with what is missing appended: "… (pending: needs haproxy: apt-get install -y haproxy)"
 * ("pending: " left out with REQUIRE_ALL_TESTS=1, where it fails). Unchanged where everything is
 * there. For an it() or describe() title; pair it with skipUnless in the test or its before().
 */
export function titleNeeding(title: string, ...requirements: Requirement[]): string {
  const missing = unmet(requirements);
  if (missing.length === 0) return title;
  const needs = `needs ${missing.map((requirement) => `${requirement.what}: ${requirement.provide}`).join('; ')}`;
  return `${title} (${requireAllTests() ? '' : 'pending: '}${needs})`;
}

/**
 * In a test or a before() hook: makes it pending (this.skip()) when a requirement is missing,
 * or fails it, saying why, when REQUIRE_ALL_TESTS=1.
 */
export function skipUnless(context: Context, ...requirements: Requirement[]): void {
  const missing = unmet(requirements);
  if (missing.length === 0) return;
  const reasons = missing
    .map((requirement) => `${requirement.what} (${requirement.missing()}; provide it with: ${requirement.provide})`)
    .join('; ');
  if (requireAllTests()) throw new Error(`${REQUIRE_ALL_TESTS_VARIABLE}=1 and this test needs ${reasons}`);
  context.skip();
}
