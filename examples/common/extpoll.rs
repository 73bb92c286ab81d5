//! A program's own `poll(2)` loop around a context built with `external_poll()`: the poll
//! array, kept from the first protocol's `*_POLL_FD` events, and one round of the loop.
//! Used by `test-server-extpoll` and `echo-server --extpoll`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use wsreactor::{Context, ProtocolEvent};

/// The loop's poll array, shared by the first protocol (which keeps it) and the loop.
pub type PollArray = Rc<RefCell<Vec<libc::pollfd>>>;

/// Applies one of the first protocol's events to the array.
pub fn track(fds: &PollArray, event: ProtocolEvent) {
    let mut fds = fds.borrow_mut();
    match event {
        ProtocolEvent::AddPollFd(a) => fds.push(libc::pollfd {
            fd: a.fd,
            events: a.events,
            revents: 0,
        }),
        // As libwebsockets' test server: the last entry takes the deleted one's place (the
        // round going through the array may skip it this time; the poll is level-triggered,
        // so the next round sees it).
        ProtocolEvent::DelPollFd(a) => {
            if let Some(i) = fds.iter().position(|p| p.fd == a.fd) {
                fds.swap_remove(i);
            }
        }
        ProtocolEvent::ChangeModePollFd(a) => {
            if let Some(p) = fds.iter_mut().find(|p| p.fd == a.fd) {
                p.events = a.events;
            }
        }
        _ => {}
    }
}

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

/// One round: polls the array for at most `max` (less if the context has a deadline
/// sooner, or work that no descriptor will announce), hands each ready descriptor to
/// `service_fd`, then calls `service_pending`.
pub fn round(ctx: &mut Context, fds: &PollArray, max: Duration) -> std::io::Result<()> {
    poll(&mut fds.borrow_mut(), ctx.poll_timeout(max))?;
    // Through the live array by index: a service may delete entries (the last one takes
    // the deleted one's place) or add some (at the end, with no revents yet).
    let mut i = 0;
    loop {
        let Some((fd, revents)) = fds
            .borrow_mut()
            .get_mut(i)
            .map(|p| (p.fd, std::mem::take(&mut p.revents)))
        else {
            break;
        };
        if revents != 0 {
            match ctx.service_fd(fd, revents) {
                Ok(true) => {}
                // Not the context's: these programs have no descriptors of their own.
                Ok(false) => log::warn!("fd {fd} is not the context's"),
                Err(e) => log::warn!("service_fd({fd}): {e}"),
            }
        }
        i += 1;
    }
    ctx.service_pending()
}

/// A graceful shutdown through the program's loop (`Context::graceful_shutdown` waits in
/// wsreactor's own loop, which an external-poll context does not have).
pub fn shutdown(ctx: &mut Context, fds: &PollArray, grace: Duration) -> std::io::Result<()> {
    ctx.shutdown(grace);
    while !ctx.is_shut_down() {
        round(ctx, fds, grace)?;
    }
    Ok(())
}
