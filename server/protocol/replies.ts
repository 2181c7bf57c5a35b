/** The reply model: one element per result, in input order, rendered by render-reply.ts. */
import type { Attributes } from './requests.js';

export type ReplyElement = {
  name: string;
  attributes: Attributes;
  /** Text content (error reasons). */
  text?: string;
  children?: ReplyElement[];
};

export function element(name: string, attributes: Attributes, children?: ReplyElement[]): ReplyElement {
  return children === undefined ? { name, attributes } : { name, attributes, children };
}

export function errorElement(attributes: Attributes, reason: string): ReplyElement {
  return { name: 'error', attributes, text: reason };
}
