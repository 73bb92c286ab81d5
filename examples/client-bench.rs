//! Load from the client side: many outgoing connections in one context, to measure the
//! client role (bench/client.sh runs it against echo-server).
//!
//! ```text
//! client-bench echo URL [--conns 100] [--depth 16] [--size 16] [--secs 5]
//! client-bench idle URL [--conns 10000] [--hold 5]
//! ```
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
}

struct Load {
    depth: usize,
    payload: Vec<u8>,
    echo: bool,
    n: std::rc::Rc<std::cell::RefCell<Counters>>,
}

impl Protocol for Load {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientEstablished => {
                self.n.borrow_mut().established += 1;
                if self.echo {
                    for _ in 0..self.depth {
                        wsi.send_binary(&self.payload)?;
                    }
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
                wsi.send_binary(&self.payload)?;
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
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok()).expect("a number");
        match a.as_str() {
            "--conns" => conns = v as usize,
            "--depth" => depth = v as usize,
            "--size" => size = v as usize,
            "--secs" => secs = v,
            "--hold" => hold = v,
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
    let mut ctx = Context::builder()
        .no_listen()
        .handshake_timeout(Duration::from_secs(30))
        .protocol(
            "load",
            Load {
                depth,
                payload: vec![b'x'; size],
                echo,
                n: n.clone(),
            },
        )
        .build()?;
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
    let (est, failed) = (n.borrow().established, n.borrow().failed);
    if !echo {
        let end = Instant::now() + Duration::from_secs(hold);
        while Instant::now() < end {
            ctx.service(Duration::from_millis(100))?;
        }
        let rss1 = rss_kb();
        println!(
            "RESULT mode=idle established={est} failed={failed} rss_before_kb={rss0} rss_after_kb={rss1} bytes_per_conn={}",
            (rss1.saturating_sub(rss0) * 1024) / est.max(1) as u64
        );
        return Ok(());
    }
    let (m0, c0, t0) = (n.borrow().received, cpu_seconds(), Instant::now());
    while t0.elapsed() < Duration::from_secs(secs) {
        ctx.service(Duration::from_millis(10))?;
    }
    let (msgs, cpu, wall) = (
        n.borrow().received - m0,
        cpu_seconds() - c0,
        t0.elapsed().as_secs_f64(),
    );
    println!(
        "RESULT mode=echo established={est} failed={failed} msgs={msgs} msgs_per_s={:.0} client_cpu_s={cpu:.2} client_us_per_msg={:.3}",
        msgs as f64 / wall,
        cpu * 1e6 / msgs.max(1) as f64
    );
    Ok(())
}
