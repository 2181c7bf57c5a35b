/** Where things are, from the compiled script (dist/scripts/bench-support/). */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SERVER_ENTRY = path.join(PROJECT_ROOT, 'dist/server/main.js');
export const DEFAULT_STRESS_CLIENT = path.join(PROJECT_ROOT, 'dist/client/stress.js');
