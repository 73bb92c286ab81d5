//! Fan-out benchmark server (bench/fanout.sh): every WebSocket connection subscribes to
//! one topic; once `--subscribers N` are in, the loop publishes bursts of 16 messages of
//! `--size` bytes for `--secs` seconds, then prints one `RESULT` line and exits: server CPU
//! per delivered message and resident memory per subscriber.
//!
//! ```text
//! cargo run --release --example fanout-bench -- --port 9001 --subscribers 1000 [--size 16]
//!     [--secs 5] [--deliveries 200000] [--bursts B] [--no-subscribe]
//! ```
//!
//! `--deliveries` is the target of delivered messages per second (bursts are spaced to
//! reach it); `--bursts B` publishes exactly B bursts instead (back to back, `--secs`
//! ignored), for callgrind runs whose difference is a whole number of bursts
//! (bench/fanout.sh --callgrind); `--no-subscribe` only counts connections, for the idle
//! baseline of memory.

#[path = "common/procstat.rs"]
mod procstat;

use std::time::{Duration, Instant};
use wsreactor::{Close, Context, Protocol, Reason, Wsi};

const TOPIC: &str = "bench";
const BURST: usize = 16;

struct Sub {
    subscribe: bool,
}

impl Protocol for Sub {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Established = reason {
            if self.subscribe {
                wsi.subscribe(TOPIC);
            }
        }
        Ok(())
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--port", 9001);
    let n: usize = arg(&args, "--subscribers", 1000);
    let size: usize = arg(&args, "--size", 16);
    let secs: f64 = arg(&args, "--secs", 5.0);
    let rate: f64 = arg(&args, "--deliveries", 200_000.0);
    let subscribe = !args.iter().any(|a| a == "--no-subscribe");
    let bursts: Option<u64> = args
        .iter()
        .position(|a| a == "--bursts")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let mut ctx = Context::builder()
        .port(port)
        .interface("127.0.0.1")
        .protocol("sub", Sub { subscribe })
        .build()?;
    let rss0 = procstat::rss_kb();
    // wait for the subscribers
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        ctx.service(Duration::from_millis(10))?;
        let have = if subscribe {
            ctx.num_subscribers(TOPIC)
        } else {
            ctx.stats().websocket
        };
        if have >= n {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("fanout-bench: only {have} of {n} connections after 600 s");
            std::process::exit(1);
        }
    }
    // let the last handshakes' buffers settle
    for _ in 0..20 {
        ctx.service(Duration::from_millis(5))?;
    }
    let rss1 = procstat::rss_kb();
    let payload = vec![b'x'; size];
    let gap = if bursts.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((BURST * n) as f64 / rate)
    };
    let s0 = ctx.stats();
    let cpu0 = procstat::cpu_seconds();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut next = t0;
    let mut published = 0u64;
    let more = |published: u64| match bursts {
        Some(b) => published < b * BURST as u64,
        None => Instant::now() < end,
    };
    while more(published) {
        if subscribe && Instant::now() >= next {
            for _ in 0..BURST {
                ctx.publish(TOPIC, &payload, false);
                published += 1;
            }
            next += gap;
        }
        let wait = if subscribe {
            next.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(50)
        };
        ctx.service(wait.min(Duration::from_millis(50)))?;
    }
    // drain what is queued
    for _ in 0..50 {
        ctx.service(Duration::from_millis(2))?;
    }
    let cpu = procstat::cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let s1 = ctx.stats();
    let delivered = s1.messages_out - s0.messages_out;
    let per_sub = (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64;
    println!(
        "RESULT mode=fanout subscribers={n} subscribe={subscribe} size={size} published={published} \
         delivered={delivered} cpu_s={cpu:.2} wall_s={wall:.2} us_per_delivered={:.3} \
         rss_bytes_per_conn={per_sub:.0} closed_slow={}",
        if delivered > 0 {
            cpu * 1e6 / delivered as f64
        } else {
            0.0
        },
        s1.closed_slow
    );
    Ok(())
}
