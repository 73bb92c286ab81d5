//! External poll loops: a fake user loop on `poll(2)` drives contexts built with
//! `external_poll()` through the `*_POLL_FD` events and `service_fd`; and the simpler route,
//! the context's own poll descriptor in someone else's loop.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::{
    ClientConnect, Close, Context, ContextBuilder, PollArgs, Protocol, ProtocolContext, ProtocolEvent,
    Reason, WriteProtocol, Wsi,
};

const POLLIN: i16 = libc::POLLIN;
const POLLOUT: i16 = libc::POLLOUT;

/// What the first protocol was told: the poll set, every change in order, and any breach of
/// the rules (a change outside LOCK/UNLOCK, adding a descriptor twice, deleting or changing
/// one never added, a wrong `prev_events`).
#[derive(Default)]
struct PollState {
    fds: BTreeMap<RawFd, i16>,
    log: Vec<ProtocolEvent>,
    locked: bool,
    errors: Vec<String>,
}

#[derive(Default, Clone)]
struct PollSet(Arc<Mutex<PollState>>);

impl PollSet {
    fn apply(&self, ev: ProtocolEvent) {
        let mut s = self.0.lock().unwrap();
        s.log.push(ev);
        let locked = s.locked;
        let mut err = |m: String| s.errors.push(m);
        match ev {
            ProtocolEvent::LockPoll if locked => err("LOCK_POLL twice".into()),
            ProtocolEvent::UnlockPoll if !locked => err("UNLOCK_POLL without LOCK_POLL".into()),
            ProtocolEvent::AddPollFd(_)
            | ProtocolEvent::DelPollFd(_)
            | ProtocolEvent::ChangeModePollFd(_)
                if !locked =>
            {
                err(format!("{ev:?} outside LOCK_POLL"))
            }
            _ => {}
        }
        match ev {
            ProtocolEvent::LockPoll => s.locked = true,
            ProtocolEvent::UnlockPoll => s.locked = false,
            ProtocolEvent::AddPollFd(a) if s.fds.insert(a.fd, a.events).is_some() => {
                s.errors.push(format!("fd {} added twice", a.fd));
            }
            ProtocolEvent::DelPollFd(a) if s.fds.remove(&a.fd).is_none() => {
                s.errors.push(format!("fd {} deleted, never added", a.fd));
            }
            ProtocolEvent::ChangeModePollFd(a) => match s.fds.get_mut(&a.fd) {
                Some(ev) if *ev == a.prev_events => *ev = a.events,
                Some(ev) => {
                    let was = *ev;
                    s.errors.push(format!(
                        "fd {}: prev_events {} but was {was}",
                        a.fd, a.prev_events
                    ));
                }
                None => s.errors.push(format!("fd {} changed, never added", a.fd)),
            },
            _ => {}
        }
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        self.0.lock().unwrap().fds.iter().map(|(&f, &e)| (f, e)).collect()
    }

    fn events_of(&self, fd: RawFd) -> Option<i16> {
        self.0.lock().unwrap().fds.get(&fd).copied()
    }

    fn log(&self) -> Vec<ProtocolEvent> {
        self.0.lock().unwrap().log.clone()
    }

    fn clear_log(&self) {
        self.0.lock().unwrap().log.clear();
    }

    fn assert_clean(&self) {
        let s = self.0.lock().unwrap();
        assert!(s.errors.is_empty(), "poll-set rule breaches: {:?}", s.errors);
        assert!(!s.locked, "left locked");
    }

    /// The descriptors added since the log was last cleared.
    fn added(&self) -> Vec<PollArgs> {
        self.log()
            .into_iter()
            .filter_map(|e| match e {
                ProtocolEvent::AddPollFd(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn deleted(&self) -> Vec<RawFd> {
        self.log()
            .into_iter()
            .filter_map(|e| match e {
                ProtocolEvent::DelPollFd(a) => Some(a.fd),
                _ => None,
            })
            .collect()
    }
}

/// The first protocol: keeps the poll set (and records the other context events).
struct Http {
    set: PollSet,
    log: Log,
}

impl Protocol for Http {
    type Session = ();

    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> {
        Ok(())
    }

    fn protocol_callback(&mut self, _: &mut ProtocolContext<'_>, ev: ProtocolEvent) -> Result<(), Close> {
        match ev {
            ProtocolEvent::LockPoll
            | ProtocolEvent::UnlockPoll
            | ProtocolEvent::AddPollFd(_)
            | ProtocolEvent::DelPollFd(_)
            | ProtocolEvent::ChangeModePollFd(_) => self.set.apply(ev),
            ProtocolEvent::EventWaitCancelled => self.log.push(Rec {
                proto: "http".into(),
                conn: None,
                ev: Ev::Cancelled,
                at: Instant::now(),
            }),
            _ => {}
        }
        Ok(())
    }
}

fn external(set: &PollSet, log: &Log, b: impl FnOnce(ContextBuilder) -> ContextBuilder) -> Context {
    let builder = Context::builder()
        .external_poll()
        .interface("127.0.0.1")
        .port(0)
        .protocol(
            "http",
            Http {
                set: set.clone(),
                log: log.clone(),
            },
        )
        .protocol("echo", Recorder::echo("echo", log));
    b(builder).build().expect("build")
}

/// `poll(2)` on `fds`.
fn sys_poll(fds: &mut [libc::pollfd], timeout: Duration) -> usize {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd`; poll(2) reads
    // `fds.len()` entries and writes only their `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n as usize
}

fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// One round of the user's loop over several contexts and its own descriptors (`foreign`,
/// polled for reading): poll everything, offer each ready descriptor to the contexts in
/// turn, then `service_pending` each. Returns the foreign descriptors found ready, with
/// their `revents` as the contexts left them.
fn round(ctxs: &mut [(&mut Context, &PollSet)], foreign: &[RawFd], max: Duration) -> Vec<(RawFd, i16)> {
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut timeout = max;
    for (ctx, set) in ctxs.iter() {
        fds.extend(set.fds().into_iter().map(|(fd, ev)| pollfd(fd, ev)));
        timeout = timeout.min(ctx.poll_timeout(max));
    }
    fds.extend(foreign.iter().map(|&fd| pollfd(fd, POLLIN)));
    sys_poll(&mut fds, timeout);
    let mut left = Vec::new();
    for p in fds.iter_mut().filter(|p| p.revents != 0) {
        let mut ours = false;
        for (ctx, _) in ctxs.iter_mut() {
            if ctx.service_fd(p.fd, p.revents).expect("service_fd") {
                ours = true;
                break;
            }
        }
        if ours {
            p.revents = 0;
        } else {
            left.push((p.fd, p.revents));
        }
    }
    for (ctx, _) in ctxs.iter_mut() {
        ctx.service_pending().unwrap();
    }
    left
}

/// Runs rounds until `done` (or panics after 10 s).
fn run_until(
    ctxs: &mut [(&mut Context, &PollSet)],
    mut done: impl FnMut(&mut [(&mut Context, &PollSet)]) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done(ctxs) {
        assert!(Instant::now() < end, "the external loop never got there");
        round(ctxs, &[], Duration::from_millis(20));
    }
}

#[test]
fn external_loop_serves_listener_connections_and_leaves_foreign_fds() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    let mut ctx = external(&set, &log, |b| b);
    let port = ctx.local_addr().unwrap().port();
    // Built: the waker (the context's own descriptor) and the listener, both for reading.
    let added = set.added();
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added.iter().all(|a| a.events == POLLIN && a.prev_events == 0));
    assert!(added.iter().any(|a| a.fd == ctx.as_raw_fd()));
    set.clear_log();

    // The loop's own descriptor, readable throughout: always handed back untouched.
    let (mut mine, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(b"x").unwrap();

    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_text("through the external loop");
        c.expect_text("through the external loop");
        c.send_close(1000, "");
        c.expect_close();
    });
    let end = Instant::now() + Duration::from_secs(10);
    let mut foreign_seen = 0;
    while !client.is_finished() {
        assert!(Instant::now() < end, "the client never finished");
        let left = round(
            &mut [(&mut ctx, &set)],
            &[mine.as_raw_fd()],
            Duration::from_millis(20),
        );
        assert_eq!(
            left,
            vec![(mine.as_raw_fd(), POLLIN)],
            "the foreign fd, revents kept"
        );
        foreign_seen += 1;
    }
    client.join().unwrap();
    assert!(foreign_seen > 0);
    let mut b = [0u8; 1];
    mine.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x", "nobody read the foreign descriptor's byte");
    // The accepted connection came and went through the poll set.
    run_until(&mut [(&mut ctx, &set)], |_| set.deleted().len() == 1);
    let added = set.added();
    assert_eq!(added.len(), 1, "{:?}", set.log());
    assert_eq!(
        added[0].events, POLLIN,
        "an accepted socket is polled for reading only"
    );
    assert_eq!(set.deleted(), vec![added[0].fd]);
    assert_eq!(set.fds().len(), 2, "the waker and the listener are left");
    assert_eq!(log.messages(None), vec![b"through the external loop".to_vec()]);
    // Nothing pending: the poll may wait as long as it likes (here: up to the max).
    assert!(!ctx.service_needed());
    assert_eq!(
        ctx.poll_timeout(Duration::from_millis(700)),
        Duration::from_millis(700)
    );
    set.assert_clean();
    drop(ctx);
    assert_eq!(
        set.fds(),
        vec![],
        "dropping the context deletes everything it added"
    );
    set.assert_clean();
}

#[test]
fn two_contexts_in_one_loop_a_client_and_a_server() {
    init_logger();
    let (sset, slog) = (PollSet::default(), Log::new());
    let mut server = external(&sset, &slog, |b| b);
    let port = server.local_addr().unwrap().port();
    let (cset, clog) = (PollSet::default(), Log::new());
    let mut client = Context::builder()
        .external_poll()
        .no_listen()
        .protocol(
            "http",
            Http {
                set: cset.clone(),
                log: clog.clone(),
            },
        )
        .protocol(
            "echo",
            Recorder::new("echo", &clog).hook(|wsi, r| {
                if r == Reason::ClientEstablished {
                    wsi.send_text("from the client context")?;
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    cset.clear_log();
    let id = client
        .connect(
            ClientConnect::url(&format!("ws://127.0.0.1:{port}/"))
                .unwrap()
                .protocols("echo"),
        )
        .unwrap();
    // Reported by connect() itself: the socket whose connect is in progress, for POLLOUT.
    let added = cset.added();
    assert_eq!(added.len(), 1, "{:?}", cset.log());
    assert_eq!(added[0].events, POLLOUT);
    let cfd = added[0].fd;
    run_until(&mut [(&mut server, &sset), (&mut client, &cset)], |_| {
        clog.count(|r| matches!(&r.ev, Ev::Other(s) if s.contains("ClientReceive"))) == 1
    });
    assert!(
        clog.snapshot()
            .iter()
            .any(|r| matches!(&r.ev, Ev::Other(s) if s.contains(&format!("{:?}", b"from the client context".to_vec())))),
        "{:?}",
        clog.kinds()
    );
    assert_eq!(slog.messages(None), vec![b"from the client context".to_vec()]);
    // Connected: polled for reading from then on.
    assert!(cset.log().iter().any(|e| matches!(
        e,
        ProtocolEvent::ChangeModePollFd(PollArgs { fd, events: POLLIN, prev_events: POLLOUT }) if *fd == cfd
    )));
    assert_eq!(cset.events_of(cfd), Some(POLLIN));
    // Each context leaves the other's descriptors alone.
    assert!(!server.service_fd(cfd, POLLIN).unwrap());
    for (fd, _) in sset.fds() {
        assert!(!client.service_fd(fd, POLLIN).unwrap(), "fd {fd}");
    }
    assert!(client.callback_on_writable(id));
    sset.assert_clean();
    cset.assert_clean();
}

#[test]
fn del_poll_fd_while_the_loop_goes_through_its_array() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    // Raw descriptor A's callback closes B when A says "kill".
    let victim: Arc<Mutex<Option<wsreactor::ConnId>>> = Arc::default();
    let v = victim.clone();
    let mut ctx = external(&set, &log, |b| {
        b.handshake_timeout(Duration::from_millis(100)).protocol(
            "raw",
            Recorder::new("raw", &log).hook(move |wsi, r| {
                if let (Reason::RawRx { data: b"kill" }, Some(id)) = (r, *v.lock().unwrap()) {
                    wsi.conn(id).close(1000, "");
                }
                Ok(())
            }),
        )
    });
    let raw = ctx.protocol_by_name("raw").unwrap();
    let waker = ctx.as_raw_fd();
    let (a, mut a_peer) = UnixStream::pair().unwrap();
    let (b, mut b_peer) = UnixStream::pair().unwrap();
    let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
    ctx.adopt_raw(a, raw).unwrap();
    *victim.lock().unwrap() = Some(ctx.adopt_raw(b, raw).unwrap());
    set.clear_log();
    a_peer.write_all(b"kill").unwrap();
    b_peer.write_all(b"hello").unwrap();
    // One poll over the array, gone through in order: A's service deletes B, whose entry
    // (with its revents from the same poll) comes next.
    let mut fds = vec![pollfd(a_fd, POLLIN), pollfd(b_fd, POLLIN)];
    assert_eq!(sys_poll(&mut fds, Duration::from_secs(5)), 2);
    let mut after_del = Vec::new();
    for p in &fds {
        let deleted = set.deleted().contains(&p.fd);
        let ours = ctx.service_fd(p.fd, p.revents).unwrap();
        after_del.push((p.fd, deleted, ours));
    }
    assert_eq!(
        after_del,
        vec![(a_fd, false, true), (b_fd, true, false)],
        "{:?}",
        set.log()
    );
    assert!(!ctx.service_fd(b_fd, POLLIN).unwrap(), "a deleted fd is foreign");
    assert!(
        log.snapshot()
            .iter()
            .all(|r| !matches!(&r.ev, Ev::Other(s) if s.contains("104, 101, 108"))),
        "B's bytes were never read"
    );
    let mut buf = [0u8; 8];
    b_peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // B was closed (a reset: it was closed with "hello" unread).
    let r = b_peer.read(&mut buf);
    assert!(
        matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    // The waker, serviced as a descriptor, delivers the cancel.
    ctx.cancel_handle().cancel();
    assert!(ctx.service_fd(waker, POLLIN).unwrap());
    assert_eq!(
        log.count(|r| r.ev == Ev::Cancelled && r.proto == "http"),
        1,
        "the waker's cancel was delivered"
    );
    // Deadlines are service_pending's: a silent connection is dropped by it, once due.
    let port = ctx.local_addr().unwrap().port();
    set.clear_log();
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    run_until(&mut [(&mut ctx, &set)], |_| set.added().len() == 1);
    let conn_fd = set.added()[0].fd;
    assert!(
        ctx.poll_timeout(Duration::from_secs(10)) <= Duration::from_millis(101),
        "the deadline bounds the wait"
    );
    std::thread::sleep(Duration::from_millis(150));
    ctx.service_pending().unwrap();
    assert_eq!(set.deleted(), vec![conn_fd]);
    silent.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 16];
    let r = (&silent).read(&mut b);
    assert!(
        matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    set.assert_clean();
}

/// A protocol that pauses reading after each message.
fn pausing(wsi: &mut Wsi<'_>, r: Reason<'_>) -> Result<(), Close> {
    if let Reason::Receive { data, .. } = r {
        wsi.send_binary(data)?;
        wsi.rx_flow_control(false);
    }
    Ok(())
}

#[test]
fn held_input_is_polled_for_nothing_resumes_without_an_event_and_a_hangup_closes() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    let mut ctx = Context::builder()
        .external_poll()
        .interface("127.0.0.1")
        .port(0)
        .protocol(
            "http",
            Http {
                set: set.clone(),
                log: log.clone(),
            },
        )
        .protocol("echo", Recorder::new("echo", &log).hook(pausing))
        .build()
        .unwrap();
    let port = ctx.local_addr().unwrap().port();
    set.clear_log();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_binary(b"one");
        assert_eq!(c.read_msg(), Msg::Binary(b"one".to_vec()));
        // Paused now: this one waits in the kernel.
        c.send_binary(b"two");
        rx.recv().unwrap();
        assert_eq!(c.read_msg(), Msg::Binary(b"two".to_vec()));
        c
    });
    run_until(&mut [(&mut ctx, &set)], |_| log.messages(None).len() == 1);
    let fd = set.added()[0].fd;
    run_until(&mut [(&mut ctx, &set)], |_| set.events_of(fd) == Some(0));
    // Polled for nothing while "two" sits unread: the loop's poll sleeps its full timeout.
    std::thread::sleep(Duration::from_millis(50));
    let mut p = [pollfd(fd, 0)];
    assert_eq!(
        sys_poll(&mut p, Duration::from_millis(30)),
        0,
        "events 0 woke the poll"
    );
    assert_eq!(log.messages(None).len(), 1);
    assert_eq!(
        ctx.poll_timeout(Duration::from_millis(40)),
        Duration::from_millis(40)
    );
    // Resumed from outside: no descriptor will say so, the context does.
    let echo = ctx.protocol_by_name("echo").unwrap();
    ctx.rx_flow_allow_all_protocol(echo);
    assert!(ctx.service_needed());
    assert_eq!(ctx.poll_timeout(Duration::from_secs(1)), Duration::ZERO);
    ctx.service_pending().unwrap();
    assert_eq!(log.messages(None).len(), 2, "the held input was read");
    tx.send(()).unwrap();
    let c = loop {
        round(&mut [(&mut ctx, &set)], &[], Duration::from_millis(20));
        if client.is_finished() {
            break client.join().unwrap();
        }
    };
    assert_eq!(
        set.events_of(fd),
        Some(0),
        "paused again after the second message"
    );
    // A reset while polled for nothing: poll(2) reports it anyway; servicing it closes the
    // connection instead of reporting it again forever.
    let sock = socket2::SockRef::from(&c.stream);
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    let mut p = [pollfd(fd, 0)];
    assert_eq!(sys_poll(&mut p, Duration::from_secs(5)), 1);
    assert_ne!(p[0].revents & (libc::POLLHUP | libc::POLLERR), 0);
    assert!(ctx.service_fd(fd, p[0].revents).unwrap());
    assert_eq!(ctx.connection_count(), 0);
    assert_eq!(set.deleted(), vec![fd]);
    set.assert_clean();
}

#[test]
fn service_fd_errors() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    let mut ctx = external(&set, &log, |b| b);
    let e = ctx.service_fd(-1, POLLIN).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // Not ours, not even open: foreign, left alone.
    assert!(!ctx.service_fd(1_000_000, POLLIN).unwrap());
    // POLLNVAL on one of ours: someone closed it; the connection is dropped.
    let port = ctx.local_addr().unwrap().port();
    set.clear_log();
    let _peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    run_until(&mut [(&mut ctx, &set)], |_| set.added().len() == 1);
    let fd = set.added()[0].fd;
    let e = ctx.service_fd(fd, libc::POLLNVAL).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(ctx.connection_count(), 0);
    assert_eq!(set.deleted(), vec![fd]);
    // revents 0 on ours does nothing.
    let listener_fd = set
        .fds()
        .into_iter()
        .find(|&(f, _)| f != ctx.as_raw_fd())
        .unwrap()
        .0;
    assert!(ctx.service_fd(listener_fd, 0).unwrap());
    set.assert_clean();
    // A context with its own loop has no service_fd.
    let mut own = Context::builder()
        .no_listen()
        .protocol("echo", Recorder::echo("echo", &log))
        .build()
        .unwrap();
    let e = own.service_fd(own.as_raw_fd(), POLLIN).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn own_poll_descriptor_in_someone_elses_loop() {
    init_logger();
    let log = Log::new();
    let mut ctx = Context::builder()
        .interface("127.0.0.1")
        .port(0)
        .protocol("echo", Recorder::echo("echo", &log))
        .build()
        .unwrap();
    let port = ctx.local_addr().unwrap().port();
    let fd = ctx.as_raw_fd();
    assert_eq!(std::os::fd::AsFd::as_fd(&ctx).as_raw_fd(), fd);
    // Idle: the one descriptor is not readable.
    let mut p = [pollfd(fd, POLLIN)];
    assert_eq!(sys_poll(&mut p, Duration::from_millis(20)), 0);
    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_text("one descriptor");
        c.expect_text("one descriptor");
    });
    let end = Instant::now() + Duration::from_secs(10);
    let mut woken = 0;
    while !client.is_finished() {
        assert!(Instant::now() < end);
        let mut p = [pollfd(fd, POLLIN)];
        if sys_poll(&mut p, ctx.poll_timeout(Duration::from_millis(20))) == 1 {
            woken += 1;
        }
        ctx.service(Duration::ZERO).unwrap();
    }
    client.join().unwrap();
    assert!(woken >= 2, "the descriptor said when to service ({woken})");
    assert_eq!(log.messages(None), vec![b"one descriptor".to_vec()]);
}

/// Raw descriptors in the fake loop: echoes what it reads.
fn raw_echo(wsi: &mut Wsi<'_>, r: Reason<'_>) -> Result<(), Close> {
    if let Reason::RawRx { data } = r {
        wsi.write(data, WriteProtocol::Http)?;
    }
    Ok(())
}

#[test]
fn adopted_socket_and_raw_descriptor_through_the_external_loop() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    let mut ctx = external(&set, &log, |b| {
        b.protocol("raw", Recorder::new("raw", &log).hook(raw_echo))
    });
    set.clear_log();
    // An adopted TCP socket, the first bytes of its request already read.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_text("adopted, externally polled");
        c.expect_text("adopted, externally polled");
    });
    let (mut sock, _) = listener.accept().unwrap();
    let mut first = [0u8; 4];
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.read_exact(&mut first).unwrap();
    let sock_fd = sock.as_raw_fd();
    let id = ctx.adopt_socket(sock, &first).unwrap();
    assert_eq!(
        set.added(),
        vec![PollArgs {
            fd: sock_fd,
            events: POLLIN,
            prev_events: 0
        }]
    );
    assert_eq!(
        ctx.poll_timeout(Duration::from_secs(1)),
        Duration::ZERO,
        "bytes already read wait"
    );
    // A raw descriptor (one end of a socket pair) beside it.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let raw_fd = ours.as_raw_fd();
    let raw = ctx.protocol_by_name("raw").unwrap();
    let rid = ctx.adopt_raw(ours, raw).unwrap();
    assert_eq!(set.events_of(raw_fd), Some(POLLIN));
    theirs.write_all(b"raw bytes").unwrap();
    theirs.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    run_until(&mut [(&mut ctx, &set)], |_| {
        client.is_finished() && log.count(|r| r.conn == Some(rid)) >= 2
    });
    client.join().unwrap();
    assert_eq!(
        log.messages(Some(id)),
        vec![b"adopted, externally polled".to_vec()]
    );
    let mut got = [0u8; 9];
    theirs.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"raw bytes");
    // The raw peer hangs up: RAW_CLOSE and its DelPollFd.
    drop(theirs);
    run_until(&mut [(&mut ctx, &set)], |_| set.events_of(raw_fd).is_none());
    assert!(log
        .of_conn(rid)
        .iter()
        .any(|r| matches!(&r.ev, Ev::Other(s) if s == "RawClose")));
    set.assert_clean();
}

#[test]
fn shutdown_through_the_external_loop() {
    init_logger();
    let (set, log) = (PollSet::default(), Log::new());
    let mut ctx = external(&set, &log, |b| b);
    let port = ctx.local_addr().unwrap().port();
    let listener_fd = set
        .fds()
        .into_iter()
        .find(|&(f, _)| f != ctx.as_raw_fd())
        .unwrap()
        .0;
    // Waiting in a loop it does not have is refused, and changes nothing.
    let e = ctx.graceful_shutdown(Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!ctx.is_shut_down());
    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_text("before");
        c.expect_text("before");
        c.expect_close()
    });
    run_until(&mut [(&mut ctx, &set)], |_| log.messages(None).len() == 1);
    set.clear_log();
    ctx.shutdown(Duration::from_secs(5));
    // The listener goes at once (reported by shutdown itself), the WebSocket gets its 1001
    // through the loop.
    assert!(set.deleted().contains(&listener_fd), "{:?}", set.log());
    run_until(&mut [(&mut ctx, &set)], |c| c[0].0.is_shut_down());
    assert_eq!(client.join().unwrap().0, Some(1001));
    set.assert_clean();
}
