//! TLS test support: certificates made with rcgen, rustls client configurations, and a
//! blocking TLS WebSocket/HTTP client over `rustls::StreamOwned` (included from
//! `tests/tls.rs` beside `common`).
#![allow(dead_code)]

use crate::common::{parse_response, take_frame, Frame, Msg, Response, IO_TIMEOUT};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsreactor::proto::{encoder, OpCode};
use wsreactor::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use wsreactor::rustls::{
    self, ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

// ---- certificates -----------------------------------------------------------------------------

/// A certificate authority made for the test.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], eku: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = vec![eku];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "wsreactor-tls-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- client configuration ---------------------------------------------------------------------

/// A client configuration trusting `roots`, presenting `cert` if given, for `versions`
/// (both TLS 1.3 and 1.2 when empty).
pub fn client_config_with(
    roots: &[CertificateDer<'static>],
    cert: Option<&Leaf>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static SupportedProtocolVersion] = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let b = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store);
    let config = match cert {
        Some(l) => b.with_client_auth_cert(vec![l.der.clone()], l.key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A client configuration trusting `ca`, with no client certificate.
pub fn client_config(ca: &Ca) -> Arc<ClientConfig> {
    client_config_with(&[ca.der()], None, &[])
}

/// A `ServerName` from a DNS name or an IP address.
pub fn server_name(name: &str) -> ServerName<'static> {
    match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_owned()).unwrap(),
    }
}

/// A TCP connection to the server on loopback, with the test timeouts.
pub fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The bytes of a ClientHello for `name` (what a client sends first).
pub fn client_hello(config: &Arc<ClientConfig>, name: &str) -> Vec<u8> {
    let mut c = ClientConnection::new(config.clone(), server_name(name)).unwrap();
    let mut v = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut v).unwrap();
    }
    v
}

// ---- the client -------------------------------------------------------------------------------

/// Blocking TLS client speaking HTTP and WebSocket (masked frames).
pub struct TlsClient {
    pub tls: StreamOwned<ClientConnection, TcpStream>,
    rbuf: Vec<u8>,
    mask: u32,
}

impl TlsClient {
    /// Connects to the server and completes the TLS handshake (from the client's side: with
    /// TLS 1.3 a server refusing the client's certificate says so after this).
    pub fn connect(port: u16, config: &Arc<ClientConfig>, name: &str) -> io::Result<TlsClient> {
        let conn = ClientConnection::new(config.clone(), server_name(name)).map_err(io::Error::other)?;
        let mut c = TlsClient::from_parts(conn, tcp(port));
        while c.tls.conn.is_handshaking() {
            c.tls.conn.complete_io(&mut c.tls.sock)?;
        }
        Ok(c)
    }

    /// Wraps a session and its socket, in whatever state they are.
    pub fn from_parts(conn: ClientConnection, sock: TcpStream) -> TlsClient {
        TlsClient {
            tls: StreamOwned::new(conn, sock),
            rbuf: Vec::new(),
            mask: 0x1234_5678,
        }
    }

    pub fn conn(&self) -> &ClientConnection {
        &self.tls.conn
    }

    /// The leaf certificate the server presented.
    pub fn server_leaf(&self) -> CertificateDer<'static> {
        self.conn().peer_certificates().expect("server certificates")[0].clone()
    }

    /// Connects and upgrades to WebSocket (`Host: host`); panics unless 101.
    pub fn open(port: u16, config: &Arc<ClientConfig>, name: &str) -> TlsClient {
        let mut c = TlsClient::connect(port, config, name).expect("TLS handshake");
        c.upgrade(name);
        c
    }

    /// Sends an upgrade request and checks the 101.
    pub fn upgrade(&mut self, host: &str) -> Response {
        self.send(&upgrade_request(host));
        let r = self.read_response().expect("a response");
        assert_eq!(r.status, 101, "upgrade refused: {}", r.raw);
        r
    }

    /// Writes `bytes` (encrypted) to the socket, reading what the server sends meanwhile into
    /// the read-ahead buffer, so a server echoing a large message never blocks us both.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("client write");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        self.tls.sock.set_nonblocking(true)?;
        let r = self.pump(bytes, end);
        self.tls.sock.set_nonblocking(false)?;
        r
    }

    fn pump(&mut self, bytes: &[u8], end: Instant) -> io::Result<()> {
        let mut pos = 0;
        let mut peer_done = false;
        loop {
            let mut progress = false;
            if pos < bytes.len() {
                let n = self.tls.conn.writer().write(&bytes[pos..])?;
                pos += n;
                progress |= n > 0;
            }
            while self.tls.conn.wants_write() {
                match self.tls.conn.write_tls(&mut self.tls.sock) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if pos == bytes.len() && !self.tls.conn.wants_write() {
                return Ok(());
            }
            if !peer_done {
                match self.tls.conn.read_tls(&mut self.tls.sock) {
                    Ok(0) => peer_done = true,
                    Ok(_) => {
                        progress = true;
                        self.tls.conn.process_new_packets().map_err(io::Error::other)?;
                        let mut tmp = [0u8; 64 << 10];
                        loop {
                            match self.tls.conn.reader().read(&mut tmp) {
                                Ok(0) => break,
                                Ok(n) => self.rbuf.extend_from_slice(&tmp[..n]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() > end {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "send stalled"));
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.mask = self.mask.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.mask | 0x0101_0101).to_be_bytes()
    }

    pub fn frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let m = self.next_mask();
        masked_frame(op, fin, payload, m)
    }

    pub fn send_frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) {
        let f = self.frame(op, fin, payload);
        self.send(&f);
    }

    pub fn send_text(&mut self, s: &str) {
        self.send_frame(OpCode::Text, true, s.as_bytes());
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.send_frame(OpCode::Binary, true, b);
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        self.send_frame(OpCode::Close, true, &p);
    }

    /// Reads more plaintext into the read-ahead buffer; `Ok(0)` at a clean end
    /// (`close_notify`); `UnexpectedEof` for a FIN without it.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 << 10];
        let n = self.tls.read(&mut tmp)?;
        self.rbuf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_buffered(&mut self, n: usize) -> Vec<u8> {
        while self.rbuf.len() < n {
            match self.fill() {
                Ok(0) => panic!("EOF with {} of {n} bytes", self.rbuf.len()),
                Ok(_) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        self.rbuf.drain(..n).collect()
    }

    /// Reads an HTTP response head: `Ok(None)` at a clean EOF before any byte of it.
    pub fn try_read_response(&mut self) -> io::Result<Option<Response>> {
        loop {
            if let Some(r) = parse_response(&mut self.rbuf) {
                return Ok(Some(r));
            }
            if self.fill()? == 0 {
                assert!(self.rbuf.is_empty(), "EOF inside a response head");
                return Ok(None);
            }
        }
    }

    pub fn read_response(&mut self) -> Option<Response> {
        self.try_read_response().expect("reading a response")
    }

    /// Reads a response head and its `Content-Length` body.
    pub fn read_full_response(&mut self) -> (Response, Vec<u8>) {
        let r = self.read_response().expect("a response");
        let n: usize = r
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        let body = self.read_exact_buffered(n);
        (r, body)
    }

    /// Reads one server frame; `Ok(None)` at a clean EOF.
    pub fn try_read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf) {
                return Ok(Some(f));
            }
            if self.fill()? == 0 {
                assert!(self.rbuf.is_empty(), "EOF inside a frame");
                return Ok(None);
            }
        }
    }

    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => panic!("connection closed while a frame was expected"),
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// The next message (fragments reassembled) or control frame.
    pub fn read_msg(&mut self) -> Msg {
        let mut acc: Option<(bool, Vec<u8>)> = None;
        loop {
            let f = self.read_frame();
            assert_eq!(f.rsv, 0, "server frame with RSV bits");
            match f.opcode {
                OpCode::Ping => return Msg::Ping(f.payload),
                OpCode::Pong => return Msg::Pong(f.payload),
                OpCode::Close => {
                    let (c, r) = f.close();
                    return Msg::Close(c, r);
                }
                OpCode::Text | OpCode::Binary => {
                    assert!(acc.is_none(), "new message inside a fragmented one");
                    acc = Some((f.opcode == OpCode::Binary, f.payload));
                }
                OpCode::Continuation => {
                    acc.as_mut()
                        .expect("continuation without a message")
                        .1
                        .extend_from_slice(&f.payload);
                }
            }
            if f.fin {
                let (bin, data) = acc.take().unwrap();
                return if bin {
                    Msg::Binary(data)
                } else {
                    Msg::Text(String::from_utf8(data).expect("server text is UTF-8"))
                };
            }
        }
    }

    pub fn expect_text(&mut self, want: &str) {
        assert_eq!(self.read_msg(), Msg::Text(want.to_owned()));
    }

    /// Reads until the end: `Ok(bytes)` at `close_notify`, the error otherwise.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if self.fill()? == 0 {
                return Ok(std::mem::take(&mut self.rbuf));
            }
        }
    }

    /// True if no plaintext and no EOF arrives within `d`.
    pub fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        match self.tls.conn.reader().read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return false,
        }
        self.tls.sock.set_read_timeout(Some(d)).unwrap();
        let r = self.tls.sock.peek(&mut b);
        self.tls.sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut)
    }

    /// The close handshake from our side: our close frame, the server's reply, and its
    /// `close_notify` and FIN.
    pub fn close(mut self) {
        self.send_close(1000, "bye");
        loop {
            match self.read_msg() {
                Msg::Close(code, _) => {
                    assert_eq!(code, Some(1000));
                    break;
                }
                _ => continue,
            }
        }
        self.tls.conn.send_close_notify();
        let _ = self.tls.conn.complete_io(&mut self.tls.sock);
        let _ = self.tls.sock.shutdown(Shutdown::Write);
    }
}

/// A client frame masked with `mask`.
pub fn masked_frame(op: OpCode, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    encoder::encode_frame(&mut v, op, fin, Some(mask), payload);
    v
}

/// A WebSocket upgrade request with `Host: host`.
pub fn upgrade_request(host: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A deterministic byte pattern.
pub fn pattern(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
