#!/usr/bin/env node
// Interop check of permessage-deflate with Node `ws`, both directions.
//
//   deflate_check.js client ws://127.0.0.1:PORT/        # Node ws client, against echo-server --deflate
//   deflate_check.js server "SNCT CNCT SMWB CMWB" ...   # Node ws echo servers for our client
//
// Client mode connects once per offer combination (server/client_no_context_takeover,
// server_max_window_bits none/9/12/15, client_max_window_bits none/9/bare: 48), checks that
// permessage-deflate was accepted and that text and binary messages (small, 100 KiB
// compressible, 64 KiB random, empty, non-ASCII) come back unchanged, twice (context
// takeover). Every message is compressed (threshold 0). Exit 0 when all do.
//
// Server mode starts one echo server per combination (1/0 for the takeover flags, a
// number or - for the window bits; threshold 0), prints "listen PORT COMBO" for each, and
// for each connection "neg PORT snct=.. cnct=.. smwb=.. cmwb=.." (the parameters the server
// accepted), then runs until killed.
'use strict';
const crypto = require('crypto');
const { WebSocket, WebSocketServer } = require('ws');

function once(ws, ev) {
  return new Promise((resolve, reject) => {
    const done = () => { clearTimeout(t); ws.off(ev, onEv); ws.off('error', onErr); };
    const onEv = (...a) => { done(); resolve(a); };
    const onErr = (e) => { done(); reject(e); };
    const t = setTimeout(() => { done(); reject(new Error(`timeout waiting for ${ev}`)); }, 5000);
    ws.on(ev, onEv);
    ws.on('error', onErr);
  });
}

async function client(url) {
  const msgs = [
    ['small', false], ['{"id":1,"name":"x"},'.repeat(5000), false], [crypto.randomBytes(65536), true],
    ['', false], [Buffer.alloc(0), true], ['\u00e9\u20ac'.repeat(999), false],
  ];
  let ok = 0;
  for (const snct of [false, true]) for (const cnct of [false, true])
  for (const smwb of [undefined, 9, 12, 15]) for (const cmwb of [undefined, 9, true]) {
    const label = `snct=${snct} cnct=${cnct} smwb=${smwb ?? '-'} cmwb=${cmwb ?? '-'}`;
    const pmd = { serverNoContextTakeover: snct, clientNoContextTakeover: cnct, threshold: 0 };
    if (smwb !== undefined) pmd.serverMaxWindowBits = smwb;
    if (cmwb !== undefined) pmd.clientMaxWindowBits = cmwb;
    const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 0 });
    let ext;
    ws.on('upgrade', (res) => { ext = res.headers['sec-websocket-extensions'] || ''; });
    await once(ws, 'open');
    if (!ws.extensions.includes('permessage-deflate')) {
      console.log(`FAIL ${label}: not negotiated (${ext})`);
      return 1;
    }
    for (let round = 0; round < 2; round++) {
      for (const [m, binary] of msgs) {
        const got = once(ws, 'message');
        ws.send(m, { binary });
        const [data, isBinary] = await got;
        const same = binary ? Buffer.compare(data, m) === 0 : data.toString('utf8') === m;
        if (isBinary !== binary || !same) {
          console.log(`FAIL ${label}: message of ${m.length} came back different`);
          return 1;
        }
      }
    }
    ws.close(1000);
    await once(ws, 'close');
    console.log(`ok   ${label}: ${ext}`);
    ok++;
  }
  return ok === 48 ? 0 : 1;
}

function server(combos) {
  for (const combo of combos) {
    const [snct, cnct, smwb, cmwb] = combo.split(' ');
    const pmd = { serverNoContextTakeover: snct === '1', clientNoContextTakeover: cnct === '1', threshold: 0 };
    if (smwb !== '-') pmd.serverMaxWindowBits = Number(smwb);
    if (cmwb !== '-') pmd.clientMaxWindowBits = Number(cmwb);
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: pmd, maxPayload: 64 << 20 });
    wss.on('listening', () => console.log(`listen ${wss.address().port} ${combo}`));
    wss.on('connection', (ws) => {
      const p = ws._extensions['permessage-deflate'];
      const q = p ? p.params : {};
      console.log(`neg ${wss.address().port} ${p ? 'deflate' : 'none'} snct=${q.server_no_context_takeover ? 1 : 0} ` +
        `cnct=${q.client_no_context_takeover ? 1 : 0} smwb=${q.server_max_window_bits ?? '-'} cmwb=${q.client_max_window_bits ?? '-'}`);
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  }
}

if (process.argv[2] === 'client' && process.argv.length === 4) {
  const t = setTimeout(() => { console.log('FAIL timeout'); process.exit(1); }, 60000);
  client(process.argv[3]).then((rc) => { clearTimeout(t); process.exit(rc); },
    (e) => { console.log(`FAIL ${e}`); process.exit(1); });
} else if (process.argv[2] === 'server' && process.argv.length > 3) {
  server(process.argv.slice(3));
} else {
  console.error('usage: deflate_check.js client URL | server "SNCT CNCT SMWB CMWB" ...');
  process.exit(2);
}
