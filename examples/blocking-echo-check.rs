//! Checks an echo server with the blocking client: text (small, UTF-8, 70 000 bytes),
//! binary (small, 200 000 bytes, empty) and a ping, each answered in kind.
//!
//! ```text
//! cargo run --release --example blocking-echo-check -- URL [--insecure | --cafile CA.pem] [--proxy PROXY]
//! ```
//!
//! `URL` is `ws://…` or `wss://…`; for wss `--insecure` accepts any certificate
//! ([`SslMode::AllowSelfSigned`]), `--cafile CA.pem` verifies it against that file's CA
//! certificates ([`BlockingOptions::ca_file`]), else it is verified against the web PKI roots.
//! `--proxy host:port` (or `http://user:password@host:port`) tunnels through that HTTP
//! proxy with `CONNECT` ([`ClientConnect::via_proxy`]); without it the environment's
//! `http_proxy` / `https_proxy` / `no_proxy` apply. `--deflate` offers permessage-deflate,
//! fails unless the server accepts it, prints the accepted parameters and sends each
//! message twice (so that context takeover is exercised).
//! Exit 0 when every echo matched, 1 otherwise.

use std::time::Duration;
use wsreactor::blocking::{BlockingClient, BlockingOptions, Message};
use wsreactor::{ClientConnect, SslMode};

const USAGE: &str =
    "usage: blocking-echo-check URL [--insecure | --cafile CA.pem] [--proxy PROXY] [--deflate]";

fn main() {
    let mut url = None;
    let mut insecure = false;
    let mut proxy = None;
    let mut ca = None;
    let mut deflate = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--insecure" | "-k" => insecure = true,
            "--deflate" => deflate = true,
            "--cafile" => match args.next() {
                Some(p) => ca = Some(p),
                None => {
                    eprintln!("{USAGE}");
                    std::process::exit(2);
                }
            },
            "--proxy" | "-x" => match args.next() {
                Some(p) => proxy = Some(p),
                None => {
                    eprintln!("{USAGE}");
                    std::process::exit(2);
                }
            },
            _ if url.is_none() && !a.starts_with('-') => url = Some(a),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let Some(url) = url else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    if let Err(e) = run(&url, insecure, ca.as_deref(), proxy.as_deref(), deflate) {
        println!("FAIL {e}");
        std::process::exit(1);
    }
}

fn run(
    url: &str,
    insecure: bool,
    ca: Option<&str>,
    proxy: Option<&str>,
    deflate: bool,
) -> std::io::Result<()> {
    let bad = |e: wsreactor::UrlError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let mut info = ClientConnect::url(url).map_err(bad)?;
    if insecure && info.ssl_mode() != SslMode::Plain {
        info = info.ssl(SslMode::AllowSelfSigned);
    }
    if let Some(p) = proxy {
        info = info.via_proxy(p).map_err(bad)?;
    }
    let mut options: BlockingOptions = BlockingClient::options().timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        options = options.ca_file(ca);
    }
    if deflate {
        options = options.permessage_deflate(wsreactor::proto::deflate::DeflateOptions::default());
    }
    let mut c = options.connect(info)?;
    if deflate {
        if c.extensions().is_empty() {
            return Err(std::io::Error::other("permessage-deflate offered, not accepted"));
        }
        println!("extensions: {}", c.extensions());
    }
    match proxy {
        Some(p) => println!("connected to {url} through the proxy {p}"),
        None => println!("connected to {url}"),
    }
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
    let rounds = if deflate { 2 } else { 1 };
    for m in messages.iter().cycle().take(messages.len() * rounds).cloned() {
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
