#!/usr/bin/env node
// Runs one grpc-js scenario (server and client in one process, over 127.0.0.1) for
// recording h2scope test captures; record.py drives it.
//
//   node scenario.js PORT SCENARIO
//
// Service demo.Demo from demo.proto (same service as captures/grpcio), loaded at run time
// with @grpc/proto-loader.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const port = Number(process.argv[2] || 50053);
const scenario = process.argv[3] || 'unary_ok';
const addr = `127.0.0.1:${port}`;

const def = protoLoader.loadSync(path.join(__dirname, 'demo.proto'),
  { keepCase: true, longs: String, defaults: true });
const Demo = grpc.loadPackageDefinition(def).demo.Demo;

const t0 = process.hrtime.bigint();
function log(...a) {
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`${ms.toFixed(3).padStart(9)}ms`, ...a);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const statusName = (c) => Object.keys(grpc.status).find((k) => grpc.status[k] === c);

// ---- server ----
const impl = {
  // text "sleep:MS" waits MS ms before answering (ignoring the deadline);
  // "notfound:MSG" fails with NOT_FOUND and MSG as details; otherwise echoes.
  Unary(call, callback) {
    const text = call.request.text;
    if (text.startsWith('notfound:')) {
      log('server: Unary -> NOT_FOUND');
      callback({ code: grpc.status.NOT_FOUND, details: text.slice('notfound:'.length) });
      return;
    }
    const wait = text.startsWith('sleep:') ? Number(text.slice(6)) : 0;
    setTimeout(() => {
      log(`server: Unary(${JSON.stringify(text)}) answers (cancelled: ${call.cancelled})`);
      callback(null, { text: 'echo:' + text, seq: call.request.seq });
    }, wait);
  },
  // seq = number of messages, text "interval:MS" = pause between them;
  // text "ticker:MS:TOTAL" = write one message every MS ms with setInterval for TOTAL ms,
  // ignoring cancellation and the deadline entirely, then call.end().
  ServerStream(call) {
    if (call.request.text.startsWith('ticker:')) {
      const [every, total] = call.request.text.slice(7).split(':').map(Number);
      let i = 0;
      call.on('cancelled', () => log(`server: ServerStream 'cancelled' event after ${i} writes (ignored)`));
      const timer = setInterval(() => {
        call.write({ text: `tick ${i}`, seq: i });
        i++;
      }, every);
      setTimeout(() => {
        clearInterval(timer);
        call.end();
        log(`server: ticker stream done: ${i} writes, call.cancelled=${call.cancelled}, call.end() called`);
      }, total);
      return;
    }
    const n = call.request.seq;
    const interval = call.request.text.startsWith('interval:') ? Number(call.request.text.slice(9)) : 0;
    let i = 0;
    let cancelled = false;
    call.on('cancelled', () => { cancelled = true; log(`server: ServerStream cancelled after ${i} messages`); });
    const next = () => {
      if (cancelled) return;
      if (i >= n) { call.end(); log(`server: ServerStream sent ${n} messages`); return; }
      call.write({ text: `item ${i}`, seq: i });
      i++;
      setTimeout(next, interval);
    };
    next();
  },
  ClientStream(call, callback) {
    let n = 0;
    call.on('data', () => { n++; });
    call.on('end', () => callback(null, { text: `got ${n}`, seq: n }));
  },
  Bidi(call) {
    let n = 0;
    call.on('data', (m) => { n++; call.write({ text: 're:' + m.text, seq: m.seq }); });
    call.on('end', () => { log(`server: Bidi echoed ${n}, ending`); call.end(); });
  },
};

function startServer() {
  const server = new grpc.Server();
  server.addService(Demo.service, impl);
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) reject(err); else resolve(server);
    });
  });
}

// ---- client scenarios ----
const unary = (client, req, deadlineMs) => new Promise((resolve) => {
  client.Unary(req, { deadline: Date.now() + deadlineMs }, (err, resp) => resolve({ err, resp }));
});

const scenarios = {
  async unary_ok(client) {
    for (let i = 0; i < 2; i++) {
      const { err, resp } = await unary(client, { text: `hello ${i}`, seq: i }, 2000);
      log('client: Unary ->', err ? statusName(err.code) : `OK ${JSON.stringify(resp.text)}`);
      if (err) throw err;
    }
  },
  async deadline_unary(client) {
    const { err } = await unary(client, { text: 'sleep:500' }, 100);
    log('client: Unary ->', err ? `${statusName(err.code)} (${err.details})` : 'OK');
    if (!err || err.code !== grpc.status.DEADLINE_EXCEEDED) throw new Error('want DEADLINE_EXCEEDED');
    await sleep(700); // the handler answers at 500 ms: show what reaches the wire
  },
  async cancel_stream(client) {
    const call = client.ServerStream({ text: 'interval:20', seq: 50 }, { deadline: Date.now() + 5000 });
    const code = await new Promise((resolve) => {
      let n = 0;
      call.on('data', () => {
        n++;
        if (n === 3) { log('client: call.cancel() after 3 messages'); call.cancel(); }
      });
      call.on('error', (e) => resolve(e.code));
      call.on('end', () => resolve(grpc.status.OK));
    });
    log('client: ServerStream ->', statusName(code));
    if (code !== grpc.status.CANCELLED) throw new Error('want CANCELLED');
    await sleep(300);
  },
  async deadline_stream(client) {
    // 250 ms deadline; the handler writes every 20 ms for 2 s and ignores cancellation
    const start = Date.now();
    const call = client.ServerStream({ text: 'ticker:20:2000' }, { deadline: start + 250 });
    const [n, code, details] = await new Promise((resolve) => {
      let n = 0;
      call.on('data', () => { n++; });
      call.on('error', (e) => resolve([n, e.code, e.details]));
      call.on('end', () => resolve([n, grpc.status.OK, '']));
    });
    log(`client: ServerStream got ${n} messages, then ${statusName(code)} (${details}) after ${Date.now() - start} ms`);
    if (code !== grpc.status.DEADLINE_EXCEEDED) throw new Error('want DEADLINE_EXCEEDED');
    // keep the connection open past the handler's 2 s of writes and its call.end()
    await sleep(2300);
  },
  async bidi_ok(client) {
    const call = client.Bidi({ deadline: Date.now() + 2000 });
    const done = new Promise((resolve, reject) => {
      let n = 0;
      call.on('data', () => { n++; });
      call.on('error', reject);
      call.on('status', (s) => resolve([n, s.code]));
    });
    for (let i = 0; i < 5; i++) call.write({ text: `msg ${i}`, seq: i });
    call.end();
    const [n, code] = await done;
    log(`client: Bidi got ${n} messages, ${statusName(code)}`);
    if (n !== 5 || code !== grpc.status.OK) throw new Error('want 5 messages and OK');
  },
  async error_status(client) {
    const { err } = await unary(client, { text: 'notfound:no such item: 42' }, 2000);
    log('client: Unary ->', err ? `${statusName(err.code)} (${err.details})` : 'OK');
    if (!err || err.code !== grpc.status.NOT_FOUND) throw new Error('want NOT_FOUND');
  },
};

async function main() {
  if (!scenarios[scenario]) throw new Error('unknown scenario ' + scenario);
  const server = await startServer();
  const client = new Demo(addr, grpc.credentials.createInsecure());
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 5000,
    (err) => (err ? reject(err) : resolve())));
  await scenarios[scenario](client);
  client.close();
  // let the client's close reach the wire first, so the teardown is client-initiated
  await sleep(100);
  await new Promise((resolve) => server.tryShutdown(resolve));
  log(`scenario ${scenario}: done`);
}

main().catch((e) => { log('FAILED:', e); process.exit(1); });
