//! Adopted connections: TCP and Unix stream sockets accepted elsewhere (with bytes already
//! read from them) served as HTTP/WebSocket, and raw descriptors (pipes, a socket pair)
//! with the RAW_* reasons; the error paths.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wsreactor::proto::{encoder, OpCode};
use wsreactor::{Close, Context, Reason, WriteProtocol, Wsi};

fn server(log: &Log, b: impl FnOnce(wsreactor::ContextBuilder) -> wsreactor::ContextBuilder) -> Context {
    b(Context::builder()
        .no_listen()
        .protocol("echo", Recorder::echo("echo", log)))
    .build()
    .unwrap()
}

/// Services `ctx` until `done` (or panics after 10 s).
fn serve_until(ctx: &mut Context, mut done: impl FnMut(&mut Context) -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done(ctx) {
        assert!(Instant::now() < end, "never got there");
        ctx.service(Duration::from_millis(10)).unwrap();
    }
}

/// Reads an HTTP response head (up to the blank line) from `s`.
fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF in the response head: {head:?}");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn adopted_tcp_socket_with_bytes_already_read() {
    init_logger();
    let log = Log::new();
    let mut ctx = server(&log, |b| b);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::thread::spawn(move || {
        let mut c = Client::open_proto(port, "echo");
        c.send_text("adopted");
        c.expect_text("adopted");
        c.send_close(1000, "");
        c.expect_close();
    });
    let (mut sock, _) = listener.accept().unwrap();
    // Whoever accepted it read the start of the request already (a router looking at the
    // method and path, say): those bytes come with it.
    let mut first = [0u8; 20];
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"GET "));
    let id = ctx.adopt_socket(sock, &first).unwrap();
    assert!(
        ctx.service_needed(),
        "the bytes already read are work without an fd event"
    );
    serve_until(&mut ctx, |_| client.is_finished());
    client.join().unwrap();
    let kinds = kinds_of(&log.of_conn(id));
    assert_eq!(&kinds[..2], ["WSI_CREATE", "NEW_CLIENT"], "{kinds:?}");
    assert!(kinds.contains(&"ESTABLISHED"), "{kinds:?}");
    assert_eq!(log.messages(Some(id)), vec![b"adopted".to_vec()]);
}

#[test]
fn adopted_unix_socket_serves_http_and_websocket() {
    init_logger();
    let log = Log::new();
    let mut ctx = server(&log, |b| b);
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let req = Req::upgrade(80).set("Sec-WebSocket-Protocol", "echo").bytes();
    // Half the request was read before adoption, the rest follows on the socket.
    let (pre, rest) = req.split_at(req.len() / 2);
    let id = ctx.adopt_unix_socket(ours, pre).unwrap();
    theirs.write_all(rest).unwrap();
    let t = std::thread::spawn(move || {
        let head = read_head(&mut theirs);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut frame = Vec::new();
        encoder::encode_frame(
            &mut frame,
            OpCode::Text,
            true,
            Some([1, 2, 3, 4]),
            b"over AF_UNIX",
        );
        theirs.write_all(&frame).unwrap();
        let mut echo = [0u8; 14];
        theirs.read_exact(&mut echo).unwrap();
        assert_eq!(&echo[..2], &[0x81, 12]);
        assert_eq!(&echo[2..], b"over AF_UNIX");
    });
    serve_until(&mut ctx, |_| t.is_finished());
    t.join().unwrap();
    assert_eq!(log.messages(Some(id)), vec![b"over AF_UNIX".to_vec()]);
}

/// Raw descriptors: what arrives is recorded, and the test's hook writes on WRITEABLE.
fn raw_hook(wsi: &mut Wsi<'_>, r: Reason<'_>) -> Result<(), Close> {
    match r {
        Reason::RawAdopt => wsi.callback_on_writable(),
        Reason::RawWriteable => wsi.write(b"through a pipe\n", WriteProtocol::Http)?,
        Reason::RawRx { data } if data == b"close me" => return Err(Close::normal()),
        _ => {}
    }
    Ok(())
}

fn raw_events(log: &Log, id: wsreactor::ConnId) -> Vec<String> {
    log.of_conn(id)
        .into_iter()
        .filter_map(|r| match r.ev {
            Ev::Other(s) if s.starts_with("Raw") => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn raw_pipes_through_cat() {
    init_logger();
    let log = Log::new();
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("http", Recorder::new("http", &log))
        .protocol("raw", Recorder::new("raw", &log).hook(raw_hook))
        .protocol("reader", Recorder::new("reader", &log))
        .build()
        .unwrap();
    let raw = ctx.protocol_by_name("raw").unwrap();
    let reader = ctx.protocol_by_name("reader").unwrap();
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat");
    // Our side of its stdout (read) and of its stdin (written on RAW_WRITEABLE).
    let out = ctx.adopt_raw(cat.stdout.take().unwrap(), reader).unwrap();
    let inp = ctx.adopt_raw(cat.stdin.take().unwrap(), raw).unwrap();
    assert_eq!(raw_events(&log, out), vec!["RawAdopt"]);
    serve_until(&mut ctx, |_| {
        log.of_conn(out)
            .iter()
            .any(|r| matches!(&r.ev, Ev::Other(s) if s.starts_with("RawRx")))
    });
    let rx = raw_events(&log, out);
    assert_eq!(
        rx[1],
        format!("RawRx {{ data: {:?} }}", b"through a pipe\n".to_vec())
    );
    assert_eq!(raw_events(&log, inp), vec!["RawAdopt", "RawWriteable"]);
    // cat exits when its stdin closes: our closing the writing end ends its stdout too.
    assert!(ctx.close(inp, 1000, ""));
    serve_until(&mut ctx, |c| c.connection_count() == 0);
    assert_eq!(raw_events(&log, inp).last().unwrap(), "RawClose");
    assert_eq!(raw_events(&log, out).last().unwrap(), "RawClose");
    let kinds = kinds_of(&log.of_conn(out));
    assert_eq!(kinds.last(), Some(&"WSI_DESTROY"));
    assert!(cat.wait().unwrap().success());
}

#[test]
fn raw_socket_of_another_protocol_and_a_callback_error_closes_it() {
    init_logger();
    let log = Log::new();
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("http", Recorder::new("http", &log))
        .protocol("raw", Recorder::new("raw", &log).hook(raw_hook))
        .build()
        .unwrap();
    let raw = ctx.protocol_by_name("raw").unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let id = ctx.adopt_raw(ours, raw).unwrap();
    serve_until(&mut ctx, |_| raw_events(&log, id).len() == 2);
    let mut got = [0u8; 15];
    theirs.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"through a pipe\n");
    theirs.write_all(b"close me").unwrap();
    serve_until(&mut ctx, |c| c.connection_count() == 0);
    assert_eq!(
        raw_events(&log, id),
        vec![
            "RawAdopt".to_owned(),
            "RawWriteable".to_owned(),
            format!("RawRx {{ data: {:?} }}", b"close me".to_vec()),
            "RawClose".to_owned()
        ]
    );
    // Our end was closed: the peer reads EOF.
    assert_eq!(theirs.read(&mut got).unwrap(), 0);
}

#[test]
fn adopt_errors() {
    init_logger();
    let log = Log::new();
    let mut ctx = server(&log, |b| b.rx_buffer_size(4096).max_connections(1));
    let echo = ctx.protocol_by_name("echo").unwrap();
    // A regular file cannot be polled.
    let f = std::fs::File::open("Cargo.toml").unwrap();
    let e = ctx.adopt_raw(f, echo).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // More bytes already read than the receive buffer holds.
    let (a, _b) = UnixStream::pair().unwrap();
    let e = ctx.adopt_unix_socket(a, &[b'x'; 4097]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(ctx.connection_count(), 0);
    // A socket whose peer is gone already: adopted, then closed cleanly on its EOF.
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let id = ctx.adopt_unix_socket(a, b"GET / HT").unwrap();
    serve_until(&mut ctx, |c| c.connection_count() == 0);
    assert_eq!(kinds_of(&log.of_conn(id)).last(), Some(&"WSI_DESTROY"));
    // The connection cap holds for adopted sockets too.
    let (a, _a2) = UnixStream::pair().unwrap();
    ctx.adopt_unix_socket(a, b"").unwrap();
    let (b, _b2) = UnixStream::pair().unwrap();
    assert!(ctx.adopt_unix_socket(b, b"").is_err());
    assert_eq!(ctx.connection_count(), 1);
}
