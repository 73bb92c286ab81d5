//! `ContextBuilder::uid` / `gid`: the process changes user once the listener is bound. It
//! changes the whole process, so it runs in a child process (this test binary again, told
//! by an environment variable). As root the child binds, drops to nobody (65534) and
//! still serves; as anyone else the change is refused and `build` fails saying so.

use std::io::{Read, Write};
use std::process::Command;
use wsreactor::{Close, Context, Protocol, Reason, Wsi};

const CHILD: &str = "WSREACTOR_PRIVILEGES_CHILD";
const NAME: &str = "uid_and_gid_are_dropped_after_binding";
const NOBODY: u32 = 65534;

#[derive(Default)]
struct P;

impl Protocol for P {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> {
        Ok(())
    }
}

fn child() {
    let root = nix::unistd::Uid::effective().is_root();
    let built = Context::builder()
        .port(0)
        .interface("127.0.0.1")
        .gid(NOBODY)
        .uid(NOBODY)
        .protocol("p", P)
        .build();
    if !root {
        let e = built.err().expect("a non-root process cannot change its uid");
        assert!(e.to_string().contains("set"), "{e}");
        println!("CHILD refused");
        return;
    }
    let mut ctx = built.unwrap();
    assert_eq!(nix::unistd::getuid().as_raw(), NOBODY);
    assert_eq!(nix::unistd::geteuid().as_raw(), NOBODY);
    assert_eq!(nix::unistd::getgid().as_raw(), NOBODY);
    assert_eq!(
        nix::unistd::getgroups().unwrap(),
        vec![nix::unistd::Gid::from_raw(NOBODY)]
    );
    // The listener bound as root still serves.
    let mut c = std::net::TcpStream::connect(ctx.local_addr().unwrap()).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !got.starts_with(b"HTTP/1.1 404") {
        assert!(std::time::Instant::now() < end, "no response");
        ctx.service(std::time::Duration::from_millis(10)).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    println!("CHILD dropped");
}

#[test]
fn uid_and_gid_are_dropped_after_binding() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expect = if nix::unistd::Uid::effective().is_root() {
        "CHILD dropped"
    } else {
        "CHILD refused"
    };
    assert!(stdout.contains(expect), "{stdout}");
}
