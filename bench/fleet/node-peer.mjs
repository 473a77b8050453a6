// The fleet benchmark's peer: a Node `ws` server over mutual TLS that holds the same idle
// channels tether-server does (bench/fleet/run drives it against tether-bench-fleet).
// It speaks just enough of UP (docs/protocol.md §2): subprotocol tether.up.v1, hello answered
// with an ok result, and the keepalive tether-server runs: a ping every --ping-interval, a
// peer that has not answered the previous ping by the next one is dropped. SIGTERM closes
// every channel with 1012 "server restarting", as tether-server does.
//
//   node node-peer.mjs --port N --cert FILE --key FILE --ca FILE [--ping-interval S]
//
// `ws` comes from $BENCH_NODE_PATH (scripts/bench installs it). Prints "listening PORT".
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(process.env.BENCH_NODE_PATH || '.', 'noop.js'));
const { WebSocketServer } = require('ws');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    if (fallback === undefined) {
      console.error(`node-peer: need --${name}`);
      process.exit(2);
    }
    return fallback;
  }
  return process.argv[i + 1];
}

const port = Number(option('port'));
const pingInterval = Number(option('ping-interval', '30')) * 1000;

const server = https.createServer({
  cert: fs.readFileSync(option('cert')),
  key: fs.readFileSync(option('key')),
  ca: fs.readFileSync(option('ca')),
  requestCert: true,
  rejectUnauthorized: true,
  ALPNProtocols: ['http/1.1'],
});
server.on('tlsClientError', () => {});

const wss = new WebSocketServer({
  server,
  path: '/up',
  perMessageDeflate: false,
  maxPayload: 256 * 1024,
  handleProtocols: (protocols) => (protocols.has('tether.up.v1') ? 'tether.up.v1' : false),
});

wss.on('connection', (ws) => {
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('error', () => {});
  ws.on('message', (data) => {
    ws.isAlive = true;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === 'hello') {
      ws.send(JSON.stringify({
        v: 1, type: 'result', id: msg.id,
        body: { ok: true, data: { server_time: Math.floor(Date.now() / 1000), status_interval_s: 60 } },
      }));
    }
  });
});

const ticker = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, pingInterval);

process.on('SIGTERM', () => {
  clearInterval(ticker);
  for (const ws of wss.clients) ws.close(1012, 'server restarting');
  server.close();
  // Give the close frames a moment to leave, then go (as a server that is stopping would).
  setTimeout(() => process.exit(0), 500);
});

server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
