/** The reply model: one element per result, in input order, rendered by render-reply.ts. */
import type { ErrorCode, Problem } from '../errors.js';
import type { Attributes } from './requests.js';

export type ReplyElement = {
  name: string;
  attributes: Attributes;
  /** Text content (error messages). */
  text?: string;
  /** An error's code (server/errors.ts): what programs and metrics look at; not on the wire. */
  code?: ErrorCode;
  children?: ReplyElement[];
};

export function element(name: string, attributes: Attributes, children?: ReplyElement[]): ReplyElement {
  return children === undefined ? { name, attributes } : { name, attributes, children };
}

export function errorElement(attributes: Attributes, problem: Problem): ReplyElement {
  return { name: 'error', attributes, text: problem.message, code: problem.code };
}
