//! The proxy defaults taken from the environment when a context is built (`http_proxy`
//! for ws://, `https_proxy` for wss://, `no_proxy`). A test binary of its own, with one
//! test: it sets the process environment.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, Wsi};

struct Errors(Arc<Mutex<Vec<String>>>);

impl Protocol for Errors {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::ClientConnectionError { reason } = reason {
            self.0.lock().unwrap().push(reason.to_owned());
        }
        Ok(())
    }
}

/// A proxy answering `403 <name>` to each CONNECT, recording the request lines.
fn refusing_proxy(name: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(8) {
            let Ok(mut c) = c else { break };
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).ok() == Some(1) {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            l2.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or_default().to_owned());
            let _ = c.write_all(format!("HTTP/1.1 403 {name}\r\n\r\n").as_bytes());
        }
    });
    (port, lines)
}

fn error_of(url: &str) -> String {
    let errs = Arc::new(Mutex::new(Vec::new()));
    let mut ctx = Context::builder()
        .no_listen()
        .handshake_timeout(Duration::from_secs(3))
        .protocol("c", Errors(errs.clone()))
        .build()
        .unwrap();
    ctx.connect(ClientConnect::url(url).unwrap()).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while errs.lock().unwrap().is_empty() && Instant::now() < end {
        ctx.service(Duration::from_millis(20)).unwrap();
    }
    let e = errs.lock().unwrap().first().cloned().expect("an error");
    e
}

#[test]
fn proxies_from_the_environment() {
    let (plain, plain_seen) = refusing_proxy("plain-proxy");
    let (tls, tls_seen) = refusing_proxy("tls-proxy");
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        std::env::remove_var(v);
    }
    std::env::set_var("http_proxy", format!("http://127.0.0.1:{plain}"));
    std::env::set_var("HTTPS_PROXY", format!("127.0.0.1:{tls}"));
    std::env::set_var("no_proxy", "direct.invalid,.skip.invalid");
    // ws:// goes to http_proxy, wss:// to HTTPS_PROXY
    let e = error_of("ws://target.invalid:81/");
    assert!(e.contains("403 plain-proxy"), "{e}");
    let e = error_of("wss://target.invalid:444/");
    assert!(e.contains("403 tls-proxy"), "{e}");
    assert_eq!(
        *plain_seen.lock().unwrap(),
        ["CONNECT target.invalid:81 HTTP/1.1"]
    );
    assert_eq!(*tls_seen.lock().unwrap(), ["CONNECT target.invalid:444 HTTP/1.1"]);
    // no_proxy: those names are resolved and connected directly (and fail to resolve)
    for url in [
        "ws://direct.invalid/",
        "ws://a.skip.invalid/",
        "wss://skip.invalid/",
    ] {
        let e = error_of(url);
        assert!(!e.contains("proxy"), "{url}: {e}");
    }
    // as curl: 127.0.0.1 is proxied unless no_proxy lists it
    let e = error_of(&format!("ws://127.0.0.1:{refused}/"));
    assert!(e.contains("403 plain-proxy"), "{e}");
    std::env::set_var("no_proxy", "127.0.0.1");
    let e = error_of(&format!("ws://127.0.0.1:{refused}/"));
    assert!(e.contains("refused") && !e.contains("proxy"), "{e}");
    assert_eq!(plain_seen.lock().unwrap().len(), 2);
    // no proxy for the scheme: direct
    std::env::remove_var("HTTPS_PROXY");
    std::env::set_var("no_proxy", "");
    let e = error_of(&format!("wss://127.0.0.1:{refused}/"));
    assert!(e.contains("refused") && !e.contains("proxy"), "{e}");
}
