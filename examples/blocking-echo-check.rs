//! Checks an echo server with the blocking client: text (small, UTF-8, 70 000 bytes),
//! binary (small, 200 000 bytes, empty) and a ping, each answered in kind.
//!
//! ```text
//! cargo run --release --example blocking-echo-check -- URL [--insecure]
//! ```
//!
//! `URL` is `ws://…` or `wss://…`; for wss `--insecure` accepts any certificate
//! ([`BlockingClient::connect_insecure`]), else it is verified against the web PKI roots.
//! Exit 0 when every echo matched, 1 otherwise.

use wsreactor::blocking::{BlockingClient, Message};

fn main() {
    let mut url = None;
    let mut insecure = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--insecure" | "-k" => insecure = true,
            _ if url.is_none() && !a.starts_with('-') => url = Some(a),
            _ => {
                eprintln!("usage: blocking-echo-check URL [--insecure]");
                std::process::exit(2);
            }
        }
    }
    let Some(url) = url else {
        eprintln!("usage: blocking-echo-check URL [--insecure]");
        std::process::exit(2);
    };
    if let Err(e) = run(&url, insecure) {
        println!("FAIL {e}");
        std::process::exit(1);
    }
}

fn run(url: &str, insecure: bool) -> std::io::Result<()> {
    let mut c = if insecure {
        BlockingClient::connect_insecure(url)?
    } else {
        BlockingClient::connect(url)?
    };
    println!("connected to {url}");
    let big_binary: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let messages = [
        Message::Text("hello from wsreactor".into()),
        Message::Text("UTF-8: \u{e9}\u{20ac}\u{1f600}".into()),
        Message::Text("x".repeat(70_000)),
        Message::Binary(b"\x00\x01\x02\xff binary".to_vec()),
        Message::Binary(big_binary),
        Message::Binary(Vec::new()),
    ];
    for m in messages {
        let (kind, len) = match &m {
            Message::Text(t) => {
                c.send_text(t)?;
                ("text", t.len())
            }
            Message::Binary(b) => {
                c.send_binary(b)?;
                ("binary", b.len())
            }
            Message::Pong(_) => unreachable!(),
        };
        match c.receive()? {
            Some(r) if r == m => println!("ok   {kind} message of {len} echoed"),
            Some(r) => {
                return Err(std::io::Error::other(format!(
                    "{kind} message of {len}: got {r:?}"
                )))
            }
            None => {
                return Err(std::io::Error::other(format!(
                    "closed before the echo of {kind} {len}"
                )))
            }
        }
    }
    c.ping(b"ping?")?;
    match c.receive()? {
        Some(Message::Pong(p)) if p == b"ping?" => println!("ok   pong"),
        other => return Err(std::io::Error::other(format!("ping: got {other:?}"))),
    }
    c.close()?;
    println!("ok   closed");
    Ok(())
}
