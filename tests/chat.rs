//! The chat example (examples/chat.rs, included as a module) over loopback: the page from
//! memory (GET and HEAD), rooms from the URL, nicknames, member counts on join and leave,
//! messages to the room only, refused room names; with the `redis` feature, two chat
//! servers' rooms through a real redis-server, member counts per server.

mod common;

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn http(port: u16, req: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn member(port: u16, path: &str) -> Client {
    let (c, _) = Client::open_with(
        port,
        Req::upgrade(port)
            .path(path)
            .set("Sec-WebSocket-Protocol", "chat"),
    );
    c.stream.set_read_timeout(Some(T)).unwrap();
    c
}

fn next(c: &mut Client) -> String {
    match c.read_msg() {
        Msg::Text(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn chat_rooms_nicknames_counts_and_the_page() {
    let s = Server::start(&Log::new(), chat::configure);

    let page = http(
        s.port,
        "GET /kitchen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("new WebSocket("), "the page: {page}");
    let head = http(s.port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let body_len = page.split("\r\n\r\n").nth(1).unwrap().len();
    assert!(
        head.contains(&format!("Content-Length: {body_len}\r\n")),
        "{head}"
    );
    let missing = http(
        s.port,
        "GET /a/b.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");

    let mut ann = member(s.port, "/kitchen?nick=ann");
    assert_eq!(next(&mut ann), r#"{"type":"join","nick":"ann","users":1}"#);
    let mut bob = member(s.port, "/kitchen?nick=bob");
    assert_eq!(next(&mut bob), r#"{"type":"join","nick":"bob","users":2}"#);
    assert_eq!(next(&mut ann), r#"{"type":"join","nick":"bob","users":2}"#);
    let mut eve = member(s.port, "/garden");
    let eve_join = next(&mut eve);
    assert!(
        eve_join.starts_with(r#"{"type":"join","nick":"guest"#) && eve_join.ends_with(r#""users":1}"#),
        "{eve_join}"
    );

    ann.send_text("hello \"kitchen\"");
    let said = r#"{"type":"msg","nick":"ann","text":"hello \"kitchen\""}"#;
    assert_eq!(next(&mut ann), said);
    assert_eq!(next(&mut bob), said);
    assert!(
        eve.quiet_for(Duration::from_millis(200)),
        "a message crossed rooms"
    );

    bob.send_text("/nick robert");
    let renamed = r#"{"type":"nick","old":"bob","new":"robert"}"#;
    assert_eq!(next(&mut ann), renamed);
    assert_eq!(next(&mut bob), renamed);

    bob.send_close(1000, "");
    bob.expect_close();
    assert_eq!(next(&mut ann), r#"{"type":"leave","nick":"robert","users":1}"#);

    // bad room names are refused with the handler's status and text
    let mut bad = Client::connect(s.port);
    bad.send(
        &Req::upgrade(s.port)
            .path("/no%20spaces")
            .set("Sec-WebSocket-Protocol", "chat")
            .bytes(),
    );
    assert_eq!(bad.read_response().unwrap().status, 400);
}

/// `chat --redis`: two chat servers on one redis-server (Debian's, started here on
/// loopback and stopped by PID). A line said in a room on one reaches the room's members
/// on the other, not other rooms; joins and leaves cross without a count, and each server
/// counts its own members.
#[cfg(feature = "redis")]
#[test]
fn chat_rooms_span_two_servers_through_redis_with_counts_per_server() {
    use common::redis::{free_port, RedisServer};
    use std::time::Instant;
    let port = free_port();
    let _redis = RedisServer::start(port, None);
    let url = format!("redis://127.0.0.1:{port}/");
    let u2 = url.clone();
    let a = Server::start(&Log::new(), move |b| chat::configure_redis(b, &url));
    let b = Server::start(&Log::new(), move |b| chat::configure_redis(b, &u2));

    let mut ann = member(a.port, "/kitchen?nick=ann");
    assert_eq!(next(&mut ann), r#"{"type":"join","nick":"ann"}"#);
    assert_eq!(next(&mut ann), r#"{"type":"users","users":1}"#);
    let mut bob = member(b.port, "/kitchen?nick=bob");
    assert_eq!(next(&mut bob), r#"{"type":"join","nick":"bob"}"#);
    assert_eq!(
        next(&mut bob),
        r#"{"type":"users","users":1}"#,
        "counts are per server"
    );
    let mut eve = member(b.port, "/garden?nick=eve");
    assert_eq!(next(&mut eve), r#"{"type":"join","nick":"eve"}"#);
    assert_eq!(next(&mut eve), r#"{"type":"users","users":1}"#);

    // Redis confirms SUBSCRIBE asynchronously: ann speaks until bob hears her (bob's
    // join may have reached ann, or not, depending on that race)
    bob.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    'linked: loop {
        assert!(Instant::now() < end, "nothing ann said on A reached bob on B");
        n += 1;
        ann.send_text(&format!("probe {n}"));
        while let Ok(Some(f)) = bob.try_read_frame() {
            if String::from_utf8_lossy(&f.payload).contains(r#""text":"probe"#) {
                break 'linked;
            }
        }
    }
    bob.stream.set_read_timeout(Some(T)).unwrap();
    for c in [&mut ann, &mut bob] {
        while !c.quiet_for(Duration::from_millis(300)) {
            let _ = c.read_msg();
        }
    }

    ann.send_text("hello from A");
    let said = r#"{"type":"msg","nick":"ann","text":"hello from A"}"#;
    assert_eq!(next(&mut ann), said, "delivered locally once");
    assert_eq!(next(&mut bob), said, "across servers");
    bob.send_text("hello from B");
    let said = r#"{"type":"msg","nick":"bob","text":"hello from B"}"#;
    assert_eq!(next(&mut bob), said);
    assert_eq!(next(&mut ann), said);
    assert!(
        eve.quiet_for(Duration::from_millis(300)),
        "a line crossed into another room"
    );
    assert!(
        ann.quiet_for(Duration::from_millis(200)),
        "ann heard a line twice"
    );

    // carol joins on B: B's members count 2, A's count is not touched
    let mut carol = member(b.port, "/kitchen?nick=carol");
    assert_eq!(next(&mut carol), r#"{"type":"join","nick":"carol"}"#);
    assert_eq!(next(&mut carol), r#"{"type":"users","users":2}"#);
    assert_eq!(next(&mut bob), r#"{"type":"join","nick":"carol"}"#);
    assert_eq!(next(&mut bob), r#"{"type":"users","users":2}"#);
    assert_eq!(next(&mut ann), r#"{"type":"join","nick":"carol"}"#);
    assert!(
        ann.quiet_for(Duration::from_millis(300)),
        "B's member count reached A"
    );
    carol.send_close(1000, "");
    carol.expect_close();
    assert_eq!(next(&mut bob), r#"{"type":"leave","nick":"carol"}"#);
    assert_eq!(next(&mut bob), r#"{"type":"users","users":1}"#);
    assert_eq!(next(&mut ann), r#"{"type":"leave","nick":"carol"}"#);
    assert!(eve.quiet_for(Duration::from_millis(200)));
}
