//! A peer for `bench/client.sh`: tungstenite's client, non-blocking on a single-thread mio
//! loop (the way a reactor user would drive it), with the same load as
//! `examples/client-bench echo`. Not a criterion bench: run with
//! `cargo bench --bench tungstenite_client -- URL CONNS DEPTH SIZE SECS`.

#[path = "../examples/common/procstat.rs"]
mod procstat;
use procstat::*;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Bytes, Message, WebSocket};

enum Conn {
    Connecting(TcpStream),
    Handshaking(MidHandshake<ClientHandshake<TcpStream>>),
    Open(WebSocket<TcpStream>),
    Gone,
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if a.len() < 5 {
        eprintln!("usage: tungstenite_client URL CONNS DEPTH SIZE SECS");
        return;
    }
    let url = a[0].clone();
    let (conns, depth, size, secs): (usize, usize, usize, u64) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
    );
    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .expect("ws://IP:PORT/");
    let payload = Bytes::from(vec![b'x'; size]);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut all: Vec<Conn> = Vec::new();
    for i in 0..conns {
        let mut s = TcpStream::connect(addr).unwrap();
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        all.push(Conn::Connecting(s));
    }
    let mut open = 0;
    let mut received: u64 = 0;
    let mut measuring: Option<(Instant, f64, u64)> = None;
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            let c = std::mem::replace(&mut all[i], Conn::Gone);
            all[i] = match c {
                Conn::Connecting(s) => {
                    if s.peer_addr().is_err() {
                        Conn::Connecting(s)
                    } else {
                        match tungstenite::client::client(url.as_str(), s) {
                            Ok((ws, _)) => {
                                open += 1;
                                start(ws, depth, &payload)
                            }
                            Err(HandshakeError::Interrupted(m)) => Conn::Handshaking(m),
                            Err(e) => panic!("handshake: {e}"),
                        }
                    }
                }
                Conn::Handshaking(m) => match m.handshake() {
                    Ok((ws, _)) => {
                        open += 1;
                        start(ws, depth, &payload)
                    }
                    Err(HandshakeError::Interrupted(m)) => Conn::Handshaking(m),
                    Err(e) => panic!("handshake: {e}"),
                },
                Conn::Open(mut ws) => {
                    loop {
                        match ws.read() {
                            Ok(Message::Binary(_)) => {
                                received += 1;
                                ws.write(Message::Binary(payload.clone())).unwrap();
                            }
                            Ok(_) => {}
                            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                    match ws.flush() {
                        Ok(()) => {}
                        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("flush: {e}"),
                    }
                    Conn::Open(ws)
                }
                Conn::Gone => Conn::Gone,
            };
        }
        if open == conns && measuring.is_none() {
            measuring = Some((Instant::now(), cpu_seconds(), received));
        }
        if let Some((t0, c0, m0)) = measuring {
            if t0.elapsed() >= Duration::from_secs(secs) {
                let msgs = received - m0;
                let cpu = cpu_seconds() - c0;
                println!(
                    "RESULT peer=tungstenite-client msgs={msgs} msgs_per_s={:.0} client_cpu_s={cpu:.2} client_us_per_msg={:.3}",
                    msgs as f64 / t0.elapsed().as_secs_f64(),
                    cpu * 1e6 / msgs.max(1) as f64
                );
                return;
            }
        }
    }
}

fn start(mut ws: WebSocket<TcpStream>, depth: usize, payload: &Bytes) -> Conn {
    for _ in 0..depth {
        ws.write(Message::Binary(payload.clone())).unwrap();
    }
    let _ = ws.flush();
    Conn::Open(ws)
}
