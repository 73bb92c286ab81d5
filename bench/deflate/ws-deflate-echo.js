// Node `ws` echo server with permessage-deflate on (ws' defaults: zlib level 6 (Z_DEFAULT),
// memLevel 8, 15-bit windows, context takeover, 1 KiB threshold): the peer of
// bench/deflate.sh. usage: node ws-deflate-echo.js PORT (NODE_PATH: where `ws` is installed)
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 9001);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: true, clientTracking: false, maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws, req) => {
  req.socket.setNoDelay(true);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node ws ${require('ws/package.json').version} deflate echo on 127.0.0.1:${port}`));
