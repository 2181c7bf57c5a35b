/** Progress lines on stderr, tagged with the running script's name and the time of day. */
let label = 'bench';

export function setProgressLabel(name: string): void {
  label = name;
}

export function progress(message: string): void {
  process.stderr.write(`[${label} ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
