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

#[path = "common/test_server.rs"]
mod test_server;

use std::time::{Duration, Instant};

/// `poll(2)` on the whole array; an interrupted poll counts as no events.
fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> std::io::Result<()> {
    // Round up: waking a fraction of a millisecond early would spin until the deadline.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd`; poll(2) reads
    // `fds.len()` entries and writes only their `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
        fds.iter_mut().for_each(|p| p.revents = 0);
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args = test_server::Args::parse("test-server-extpoll");
    let fds = test_server::PollArray::default();
    let test_server::TestServer { mut ctx, dumb } = test_server::TestServer::build(&args, Some(fds.clone()))?;
    log::info!("external poll loop over {} descriptors", fds.borrow().len());
    let tick = Duration::from_millis(50);
    let mut next = Instant::now() + tick;
    loop {
        // How long the poll may wait: until our own 50 ms tick, or less if the context
        // has a deadline sooner or work that no descriptor will announce.
        let timeout = ctx.poll_timeout(next.saturating_duration_since(Instant::now()));
        poll(&mut fds.borrow_mut(), timeout)?;
        // Through the live array by index: a service may delete entries (the last one
        // takes the deleted one's place) or add some (at the end, with no revents yet).
        let mut i = 0;
        loop {
            let Some((fd, revents)) = fds.borrow().get(i).map(|p| (p.fd, p.revents)) else {
                break;
            };
            if revents != 0 {
                if let Some(p) = fds.borrow_mut().get_mut(i) {
                    p.revents = 0;
                }
                match ctx.service_fd(fd, revents) {
                    Ok(true) => {}
                    // Not the context's: this program has no descriptors of its own.
                    Ok(false) => log::warn!("fd {fd} is not the context's"),
                    Err(e) => log::warn!("service_fd({fd}): {e}"),
                }
            }
            i += 1;
        }
        ctx.service_pending()?;
        if Instant::now() >= next {
            ctx.callback_on_writable_all_protocol(dumb);
            next += tick;
            if next < Instant::now() {
                next = Instant::now() + tick;
            }
        }
    }
}
