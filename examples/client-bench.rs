//! Load from the client side: many outgoing connections in one context, to measure the
//! client role (bench/client.sh runs it against echo-server).
//!
//! ```text
//! client-bench echo URL [--conns 100] [--depth 16] [--size 16] [--secs 5]
//! client-bench idle URL [--conns 10000] [--hold 5]
//! ... [--json 1] [--deflate 1] [--warm 1] [--count N]
//! ```
//!
//! `--json 1` sends text messages of `size` bytes of JSON-like records (compressible)
//! instead of binary `x`s; `--deflate 1` offers permessage-deflate (and reports how many
//! connections negotiated it); `--warm 1` makes each idle connection send one message
//! first, so that a server keeping per-connection compressors has made them; `--count N`
//! ends an echo run once N messages came back in all (counted from the first connection
//! on, instead of for `--secs`): a fixed amount of work, for instruction counts under
//! callgrind that do not depend on the machine's load.
//!
//! `echo` keeps `depth` messages of `size` bytes in flight on each connection and prints
//! messages per second and this process's CPU time per message; `idle` opens the
//! connections, waits until all are established, and prints the growth of its resident
//! memory per connection.

#[path = "common/procstat.rs"]
mod procstat;
use procstat::*;

use std::time::{Duration, Instant};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, Wsi};

#[derive(Default)]
struct Counters {
    established: usize,
    failed: usize,
    received: u64,
    deflated: usize,
}

impl Load {
    fn send(&self, wsi: &mut Wsi<'_>) -> Result<(), Close> {
        if self.text {
            wsi.write(&self.payload, wsreactor::WriteProtocol::Text)?;
        } else {
            wsi.send_binary(&self.payload)?;
        }
        Ok(())
    }
}

/// `n` bytes of JSON-like records: the compressible text of the deflate benchmark.
fn json_like(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"active\":{},\"score\":{},\"tags\":[\"a\",\"b{}\"]}},",
            i % 97,
            i % 3 == 0,
            (i * 7919) % 10007,
            i % 5
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

struct Load {
    depth: usize,
    payload: Vec<u8>,
    text: bool,
    warm: bool,
    echo: bool,
    n: std::rc::Rc<std::cell::RefCell<Counters>>,
}

impl Protocol for Load {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientEstablished => {
                let mut n = self.n.borrow_mut();
                n.established += 1;
                n.deflated += usize::from(!wsi.extensions().is_empty());
                drop(n);
                if self.echo {
                    for _ in 0..self.depth {
                        self.send(wsi)?;
                    }
                } else if self.warm {
                    self.send(wsi)?;
                }
            }
            Reason::ClientConnectionError { reason } => {
                let mut n = self.n.borrow_mut();
                n.failed += 1;
                if n.failed <= 3 {
                    eprintln!("client-bench: {reason}");
                }
            }
            Reason::ClientReceive { last: true, .. } => {
                self.n.borrow_mut().received += 1;
                if self.echo {
                    self.send(wsi)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let url = args.next().unwrap_or_default();
    let (mut conns, mut depth, mut size, mut secs, mut hold) = (0usize, 16usize, 16usize, 5u64, 5u64);
    let (mut json, mut deflate, mut warm, mut count) = (false, false, false, 0u64);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok()).expect("a number");
        match a.as_str() {
            "--conns" => conns = v as usize,
            "--depth" => depth = v as usize,
            "--size" => size = v as usize,
            "--secs" => secs = v,
            "--hold" => hold = v,
            "--json" => json = v != 0,
            "--deflate" => deflate = v != 0,
            "--warm" => warm = v != 0,
            "--count" => count = v,
            other => panic!("client-bench: unknown option {other}"),
        }
    }
    let echo = match mode.as_str() {
        "echo" => true,
        "idle" => false,
        _ => {
            eprintln!(
                "usage: client-bench echo|idle URL [--conns N] [--depth D] [--size S] [--secs T] [--hold T]"
            );
            std::process::exit(2);
        }
    };
    if conns == 0 {
        conns = if echo { 100 } else { 10_000 };
    }
    let n = std::rc::Rc::new(std::cell::RefCell::new(Counters::default()));
    let mut b = Context::builder()
        .no_listen()
        .handshake_timeout(Duration::from_secs(30))
        .max_message_size(64 << 20)
        .protocol(
            "load",
            Load {
                depth,
                payload: if json { json_like(size) } else { vec![b'x'; size] },
                text: json,
                warm,
                echo,
                n: n.clone(),
            },
        );
    if deflate {
        b = b.permessage_deflate(wsreactor::proto::deflate::DeflateOptions::default());
    }
    let mut ctx = b.build()?;
    let info =
        ClientConnect::url(&url).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let rss0 = rss_kb();
    let start = Instant::now();
    let mut opened = 0;
    // Open in batches so the server's accept queue keeps up.
    while n.borrow().established + n.borrow().failed < conns {
        while opened < conns && opened - (n.borrow().established + n.borrow().failed) < 256 {
            ctx.connect(info.clone())?;
            opened += 1;
        }
        ctx.service(Duration::from_millis(10))?;
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let (est, failed, deflated) = (n.borrow().established, n.borrow().failed, n.borrow().deflated);
    if !echo {
        let end = Instant::now() + Duration::from_secs(hold);
        while Instant::now() < end {
            ctx.service(Duration::from_millis(100))?;
        }
        let rss1 = rss_kb();
        println!(
            "RESULT mode=idle established={est} failed={failed} deflated={deflated} rss_before_kb={rss0} rss_after_kb={rss1} bytes_per_conn={}",
            (rss1.saturating_sub(rss0) * 1024) / est.max(1) as u64
        );
        return Ok(());
    }
    let (m0, c0, t0) = (n.borrow().received, cpu_seconds(), Instant::now());
    if count > 0 {
        while n.borrow().received < count && t0.elapsed() < Duration::from_secs(600) {
            ctx.service(Duration::from_millis(10))?;
        }
        let msgs = n.borrow().received;
        println!("RESULT mode=echo established={est} failed={failed} deflated={deflated} msgs={msgs}");
        return Ok(());
    }
    while t0.elapsed() < Duration::from_secs(secs) {
        ctx.service(Duration::from_millis(10))?;
    }
    let (msgs, cpu, wall) = (
        n.borrow().received - m0,
        cpu_seconds() - c0,
        t0.elapsed().as_secs_f64(),
    );
    println!(
        "RESULT mode=echo established={est} failed={failed} deflated={deflated} msgs={msgs} msgs_per_s={:.0} mb_per_s={:.2} client_cpu_s={cpu:.2} client_us_per_msg={:.3}",
        msgs as f64 / wall,
        (msgs as f64 * size as f64) / wall / 1e6,
        cpu * 1e6 / msgs.max(1) as f64
    );
    Ok(())
}
