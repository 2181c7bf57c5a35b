#!/usr/bin/env node
/**
 * exchange-client: send XML requests to an exchange server and print the replies.
 * Files are sent in the order given (a directory: its *.xml files by name);
 * no file or '-' reads one request from standard input.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { describeFailure, openChannel, parseFramingChoice } from './wire.js';

const HELP = `Usage: exchange-client [--host HOST] [--port PORT] [--framing auto|bare|length] [FILE|DIR|-]...

Sends each XML file as one length-prefixed request and prints each reply.
  --host      server address (default 127.0.0.1, or EXCHANGE_HOST)
  --port      server port (default 12345, or EXCHANGE_PORT)
  --framing   the server's reply framing: 'auto' (default: the first reply shows it),
              'bare' (one connection per request, reply read until the server closes) or
              'length' (one persistent connection, length-prefixed replies); or REPLY_FRAMING.
              A server that speaks the other framing is an error, named at once.
  --help      this text

While the server refuses connections the client tries again for about 2 s, then gives up.
Exit status: 0 when every request got a reply, 1 when the server could not be reached or a
reply could not be read, 2 on bad usage.
Example: npm run client -- examples/create.xml examples/transactions.xml`;

/** A usage error: one line naming the problem, not the whole help. */
function usage(message: string): number {
  process.stderr.write(`exchange-client: ${message}\nTry 'exchange-client --help' for more information.\n`);
  return 2;
}

async function requestFiles(args: string[]): Promise<Buffer[]> {
  if (args.length === 0) args = ['-'];
  const bodies: Buffer[] = [];
  for (const arg of args) {
    if (arg === '-') {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      bodies.push(Buffer.concat(chunks));
    } else if ((await stat(arg)).isDirectory()) {
      const names = (await readdir(arg)).filter((name) => name.endsWith('.xml')).sort();
      for (const name of names) bodies.push(await readFile(path.join(arg, name)));
    } else {
      bodies.push(await readFile(arg));
    }
  }
  return bodies;
}

function parseCommandLine() {
  return parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      framing: { type: 'string' },
      help: { type: 'boolean' },
    },
    allowPositionals: true,
  });
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine();
  } catch (error) {
    return usage((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const host = values.host ?? (process.env.EXCHANGE_HOST || '127.0.0.1');
  const portText = values.port ?? (process.env.EXCHANGE_PORT || '12345');
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    return usage(`--port must be a port number from 1 to 65535, not ${JSON.stringify(portText)}`);
  const framingText = values.framing ?? (process.env.REPLY_FRAMING || 'auto');
  const framing = parseFramingChoice(framingText);
  if (framing === null) return usage(`--framing must be auto, bare or length, not ${JSON.stringify(framingText)}`);
  let bodies: Buffer[];
  try {
    bodies = await requestFiles(positionals);
  } catch (error) {
    process.stderr.write(`cannot read request: ${(error as Error).message}\n`);
    return 2;
  }
  const print = (reply: string) => process.stdout.write(reply.endsWith('\n') ? reply : `${reply}\n`);
  let answered = 0;
  try {
    const channel = await openChannel(framing, host, port);
    // One at a time, so each file's effects are in place before the next is sent.
    for (const body of bodies) {
      print(await channel.send(body));
      answered++;
    }
    channel.close();
    return 0;
  } catch (error) {
    const progress = bodies.length > 1 ? ` (after ${answered} of ${bodies.length} requests were answered)` : '';
    process.stderr.write(`exchange-client: ${describeFailure(error)}${progress}\n`);
    return 1;
  }
}

// Piped into `head` and the like: a closed stdout is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
process.exitCode = await main();
