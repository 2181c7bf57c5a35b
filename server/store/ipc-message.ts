/**
 * The cluster's IPC channel carries messages of several kinds (node's own among them):
 * each receiver takes only its own, told apart by `type` and the list it must carry.
 */
export function isMessageWithList(message: unknown, type: string, list: string): boolean {
  if (typeof message !== 'object' || message === null) return false;
  const fields = message as Record<string, unknown>;
  return fields.type === type && Array.isArray(fields[list]);
}
