//! A peer for `bench/client.sh`: tokio-tungstenite's client on a current-thread runtime,
//! one task per connection, with the same load as `examples/client-bench echo` (each
//! received message answered with `send`, i.e. feed + flush). Not a criterion bench: run
//! with `cargo bench --bench tokio_tungstenite_client -- URL CONNS DEPTH SIZE SECS`.

#[path = "../examples/common/procstat.rs"]
mod procstat;
use procstat::*;

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Bytes, Message};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if a.len() < 5 {
        eprintln!("usage: tokio_tungstenite_client URL CONNS DEPTH SIZE SECS");
        return;
    }
    let url = a[0].clone();
    let (conns, depth, size, secs): (usize, usize, usize, u64) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let received = Arc::new(AtomicU64::new(0));
        let established = Arc::new(AtomicUsize::new(0));
        let payload = Bytes::from(vec![b'x'; size]);
        for _ in 0..conns {
            let (url, received, established, payload) =
                (url.clone(), received.clone(), established.clone(), payload.clone());
            tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
                established.fetch_add(1, Ordering::SeqCst);
                for _ in 0..depth {
                    ws.feed(Message::Binary(payload.clone())).await.unwrap();
                }
                ws.flush().await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_binary() {
                        received.fetch_add(1, Ordering::Relaxed);
                        if ws.send(Message::Binary(payload.clone())).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        while established.load(Ordering::SeqCst) < conns {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (t0, c0, m0) = (Instant::now(), cpu_seconds(), received.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let msgs = received.load(Ordering::Relaxed) - m0;
        let cpu = cpu_seconds() - c0;
        println!(
            "RESULT peer=tokio-tungstenite-client msgs={msgs} msgs_per_s={:.0} client_cpu_s={cpu:.2} client_us_per_msg={:.3}",
            msgs as f64 / t0.elapsed().as_secs_f64(),
            cpu * 1e6 / msgs.max(1) as f64
        );
    });
}
