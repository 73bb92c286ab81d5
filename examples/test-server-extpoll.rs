//! The test server driven from the program's own `poll(2)` loop, as libwebsockets'
//! `libwebsockets-test-server-extpoll`: the same protocols, page and command line as
//! `test-server` (the code is shared, in `common/test_server.rs`), but the context is built
//! with `external_poll()`. It never waits itself: its first protocol keeps a plain
//! `libc::pollfd` array from the `AddPollFd` / `DelPollFd` / `ChangeModePollFd` events,
//! and this loop polls that array, hands each ready descriptor to `service_fd`, and calls
//! `service_pending` once per round.
//!
//! ```text
//! cargo run --release --example test-server-extpoll -- [--port 7681] [--interface ADDR|IFACE]
//!     [--resource-path www] [--closetest] [-d LWS_LOG_MASK]
//!     [--ssl [--cert FILE.pem --key FILE.pem] [--ca CA.pem]]
//! ```

#[path = "common/serve.rs"]
mod serve;
#[path = "common/tls.rs"]
mod tls;

#[path = "common/extpoll.rs"]
mod extpoll;

#[path = "common/test_server.rs"]
mod test_server;

use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let args = std::sync::Arc::new(test_server::Args::parse("test-server-extpoll"));
    serve::run(args.live.threads(), move |stop| {
        let fds = extpoll::PollArray::default();
        let test_server::TestServer { mut ctx, dumb } =
            test_server::TestServer::build(&args, Some(fds.clone()))?;
        stop.register(&ctx);
        log::info!("external poll loop over {} descriptors", fds.borrow().len());
        let tick = Duration::from_millis(50);
        let mut next = Instant::now() + tick;
        while !stop.stopped() {
            // Our own 50 ms tick bounds the wait (the context may ask for less).
            extpoll::round(&mut ctx, &fds, next.saturating_duration_since(Instant::now()))?;
            if Instant::now() >= next {
                test_server::tick(&mut ctx, dumb);
                next += tick;
                if next < Instant::now() {
                    next = Instant::now() + tick;
                }
            }
        }
        extpoll::shutdown(&mut ctx, &fds, serve::GRACE)
    });
    Ok(())
}
