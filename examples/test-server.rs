//! The wsreactor test server, wire-compatible with libwebsockets' `libwebsockets-test-server`.
//!
//! ```text
//! cargo run --release --example test-server -- [--port 7681] [--interface ADDR|IFACE]
//!     [--resource-path www] [--closetest] [-d LWS_LOG_MASK]
//!     [--ssl [--cert FILE.pem --key FILE.pem] [--ca CA.pem]]
//!     [--ping-interval SECS] [--ping-timeout SECS] [--http-timeout SECS] [--threads N]
//! ```
//!
//! `--threads N` runs N contexts, one per thread, on the same port (`SO_REUSEPORT`); each
//! has its own protocols' state, so mirror strokes and the status list are shared only by
//! the clients the kernel gave to the same thread. On SIGINT or SIGTERM each context sends
//! 1001 to its WebSockets, finishes responses in flight (up to 5 s), and the program exits 0.
//!
//! `--ssl` serves https:// and wss:// on the same port (a self-signed certificate made at
//! start-up unless `--cert`/`--key` are given).
//!
//! Serves the files of `--resource-path` over HTTP (`/` is `test.html`) and these protocols
//! on the same port (their code is in `common/test_server.rs`, shared with
//! `test-server-extpoll`):
//!
//! | protocol | what |
//! | --- | --- |
//! | `http-only` | the first protocol: HTTP requests, left to the built-in file server |
//! | `dumb-increment-protocol` | a text counter every 50 ms, from 0 per connection; `reset\n` sets it to 0 |
//! | `lws-mirror-protocol` | every message goes to every client of the same room (`?mirror=NAME`), through the room's topic: each member's queue bounded (1 MiB), the oldest skipped for a member that does not read |
//! | `lws-status` | a JSON list of the live WebSocket connections when a watcher joins, then at most every 500 ms what changed (`added`, `removed`) and the server's `stats` |
//! | `echo` | echoes each message |

#[path = "common/serve.rs"]
mod serve;
#[path = "common/tls.rs"]
mod tls;

#[path = "common/extpoll.rs"]
#[allow(dead_code)] // the poll array type only: this loop is wsreactor's own
mod extpoll;

#[path = "common/test_server.rs"]
mod test_server;

use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let args = std::sync::Arc::new(test_server::Args::parse("test-server"));
    serve::run(args.live.threads(), move |stop| {
        let test_server::TestServer { mut ctx, dumb } = test_server::TestServer::build(&args, None)?;
        stop.register(&ctx);
        // As in libwebsockets' test server: the main loop ticks the counter every 50 ms.
        let tick = Duration::from_millis(50);
        let mut next = Instant::now() + tick;
        while !stop.stopped() {
            ctx.service(next.saturating_duration_since(Instant::now()))?;
            if Instant::now() >= next {
                test_server::tick(&mut ctx, dumb);
                next += tick;
                if next < Instant::now() {
                    next = Instant::now() + tick;
                }
            }
        }
        ctx.graceful_shutdown(serve::GRACE)
    });
    Ok(())
}
