/** The server as users run it: a process with configuration, signals and a clean shutdown. */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { LengthClient } from '../support/client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { SERVER_ENTRY, startServerProcess } from '../support/process.js';
import { parseResults } from '../support/xml.js';

describe('server process', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => database.drop());

  it('--help lists every setting and exits 0', () => {
    const result = spawnSync(process.execPath, [SERVER_ENTRY, '--help'], { encoding: 'utf8' });
    expect(result.status).to.equal(0);
    for (const name of ['PORT', 'DATABASE_URL', 'REDIS_URL', 'REPLY_FRAMING', 'MAX_REQUEST_BYTES', 'REQUEST_TIMEOUT_MS']) {
      expect(result.stdout).to.contain(name);
    }
  });

  it('a bad setting stops the start with a message naming it, exit status 2', () => {
    const result = spawnSync(process.execPath, [SERVER_ENTRY], { encoding: 'utf8', env: { ...process.env, REPLY_FRAMING: 'xml' } });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.contain('REPLY_FRAMING');
    const flag = spawnSync(process.execPath, [SERVER_ENTRY, '--no-such-flag'], { encoding: 'utf8' });
    expect(flag.status).to.equal(2);
  });

  it('SIGTERM answers the request in flight, closes persistent connections and exits 0', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
    const client = await LengthClient.connect(server.port);
    const idle = await LengthClient.connect(server.port);
    // A request that takes a while (2,000 transactions), so it is surely being processed when the signal arrives.
    const accounts = Array.from({ length: 2000 }, (_, index) => `<account id="${index + 1}" balance="10"/>`).join('');
    const inFlight = client.send(`<create>${accounts}</create>`);
    await new Promise((resolve) => setTimeout(resolve, 150));
    server.child.kill('SIGTERM');
    const reply = parseResults(await inFlight);
    expect(reply.filter((node) => node.name === 'created')).to.have.length(2000);
    expect(await server.stop()).to.equal(0);
    expect(server.log(), server.log()).to.contain('"msg":"stopped"');
    idle.close();
  });
});
