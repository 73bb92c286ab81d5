//! A libwebsockets-1.x-style core (`include/libwebsockets.h`) over a wsreactor [`Context`].
//!
//! The names are lws 1.x's (`libwebsocket_create_context`, `libwebsocket_service`,
//! `libwebsocket_write`, `lws_frame_is_binary`, …) and so are the callback's signature,
//! the `LWS_CALLBACK_*` reason numbers and the structs' layouts, so that a server written
//! for lws 1.x compiles against `libwebsockets.h` with few or no changes.
//!
//! **Handles.** A `struct libwebsocket *` is a handle, not memory: the connection's slot
//! and generation ([`ConnId::as_u64`], the slot plus one so that it is never NULL). A
//! stored `wsi` of a connection that closed gets -1 from every function, even when a new
//! connection has its slot. Contexts are checked against the list of live ones, so a
//! destroyed context gets -1 (or NULL), not freed memory.
//!
//! **Re-entrancy.** Callbacks may call the API. While `libwebsocket_service` runs, the
//! Rust [`Context`] is borrowed by it (it sits in a `RefCell`); calls made from a callback
//! never borrow it again, they go through the callback's [`Wsi`] (its own connection)
//! or [`ProtocolContext`] (the requests about other connections and protocols, carried
//! out after the callback returns). Calls between `service` calls borrow the context.
//! A context belongs to the thread that created it: any other thread gets -1, except for
//! `libwebsocket_cancel_service`, which is meant for them.

use crate::guard;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;
use wsreactor::{
    CancelHandle, ClientCerts, Close, ConnId, Context, PlainHttp, PollArgs, Protocol, ProtocolContext,
    ProtocolEvent, ProtocolId, ProtocolSpec, Reason, WriteProtocol, Wsi,
};

/// `struct libwebsocket`: only pointers to it exist, and they are handles.
#[repr(C)]
pub struct libwebsocket {
    _opaque: [u8; 0],
}

/// `callback_function`: `int callback(struct libwebsocket_context *context, struct
/// libwebsocket *wsi, enum libwebsocket_callback_reasons reason, void *user, void *in,
/// size_t len)`.
pub type CallbackFn = unsafe extern "C" fn(
    *mut libwebsocket_context,
    *mut libwebsocket,
    c_int,
    *mut c_void,
    *mut c_void,
    usize,
) -> c_int;

/// `struct libwebsocket_protocols`.
#[repr(C)]
pub struct libwebsocket_protocols {
    /// The sub-protocol name.
    pub name: *const c_char,
    /// Its callback; NULL ends the array.
    pub callback: Option<CallbackFn>,
    /// Bytes of zeroed per-connection memory handed to the callback as `user`.
    pub per_session_data_size: usize,
    /// Largest piece of payload per `RECEIVE` (0: as much as was read).
    pub rx_buffer_size: usize,
    /// The user's number, unused here.
    pub id: c_uint,
    /// Filled in by `libwebsocket_create_context`.
    pub owning_server: *mut libwebsocket_context,
    /// Filled in by `libwebsocket_create_context`: the position in the array.
    pub protocol_index: c_int,
}

/// `struct lws_context_creation_info` (lws 1.x layout).
#[repr(C)]
pub struct lws_context_creation_info {
    /// Port to listen on; `CONTEXT_PORT_NO_LISTEN` (-1) for none.
    pub port: c_int,
    /// NULL for all interfaces, else an interface name or address.
    pub iface: *const c_char,
    /// The protocols, ended by an entry with a NULL callback.
    pub protocols: *mut libwebsocket_protocols,
    /// Must be NULL (extensions are not supported).
    pub extensions: *mut c_void,
    /// Ignored.
    pub token_limits: *mut c_void,
    /// PEM certificate chain: serve TLS.
    pub ssl_cert_filepath: *const c_char,
    /// PEM private key.
    pub ssl_private_key_filepath: *const c_char,
    /// PEM CA certificates for client certificates.
    pub ssl_ca_filepath: *const c_char,
    /// TLS 1.3/1.2 suites by IANA name, `:`-separated.
    pub ssl_cipher_list: *const c_char,
    /// Group id to change to after binding, or -1.
    pub gid: c_int,
    /// User id to change to after binding, or -1.
    pub uid: c_int,
    /// `LWS_SERVER_OPTION_*` bits.
    pub options: c_uint,
    /// Returned by `libwebsocket_context_user`.
    pub user: *mut c_void,
    /// TCP keepalive idle seconds (0: the library's default).
    pub ka_time: c_int,
    /// TCP keepalive probes.
    pub ka_probes: c_int,
    /// TCP keepalive probe interval seconds.
    pub ka_interval: c_int,
    /// Ignored (no OpenSSL here).
    pub provided_client_ssl_ctx: *mut c_void,
}

/// `struct libwebsocket_pollargs`, the `in` of the `*_POLL_FD` reasons.
#[repr(C)]
pub struct libwebsocket_pollargs {
    /// The descriptor.
    pub fd: c_int,
    /// The events to poll it for.
    pub events: c_int,
    /// The events it was polled for.
    pub prev_events: c_int,
}

/// `struct libwebsocket_pollfd` (= `struct pollfd`), the argument of
/// `libwebsocket_service_fd`.
#[repr(C)]
pub struct libwebsocket_pollfd {
    /// The descriptor.
    pub fd: c_int,
    /// The events polled for.
    pub events: i16,
    /// The events that happened; zeroed when serviced.
    pub revents: i16,
}

/// The reason numbers (lws 1.x's `enum libwebsocket_callback_reasons`).
#[allow(missing_docs)]
pub mod reason {
    use std::ffi::c_int;
    pub const ESTABLISHED: c_int = 0;
    pub const CLIENT_CONNECTION_ERROR: c_int = 1;
    pub const CLIENT_FILTER_PRE_ESTABLISH: c_int = 2;
    pub const CLIENT_ESTABLISHED: c_int = 3;
    pub const CLOSED: c_int = 4;
    pub const CLOSED_HTTP: c_int = 5;
    pub const RECEIVE: c_int = 6;
    pub const CLIENT_RECEIVE: c_int = 7;
    pub const CLIENT_RECEIVE_PONG: c_int = 8;
    pub const CLIENT_WRITEABLE: c_int = 9;
    pub const SERVER_WRITEABLE: c_int = 10;
    pub const HTTP: c_int = 11;
    pub const HTTP_BODY: c_int = 12;
    pub const HTTP_BODY_COMPLETION: c_int = 13;
    pub const HTTP_FILE_COMPLETION: c_int = 14;
    pub const HTTP_WRITEABLE: c_int = 15;
    pub const FILTER_NETWORK_CONNECTION: c_int = 16;
    pub const FILTER_HTTP_CONNECTION: c_int = 17;
    pub const SERVER_NEW_CLIENT_INSTANTIATED: c_int = 18;
    pub const FILTER_PROTOCOL_CONNECTION: c_int = 19;
    pub const OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION: c_int = 22;
    pub const CLIENT_APPEND_HANDSHAKE_HEADER: c_int = 23;
    pub const PROTOCOL_INIT: c_int = 26;
    pub const PROTOCOL_DESTROY: c_int = 27;
    pub const WSI_CREATE: c_int = 28;
    pub const WSI_DESTROY: c_int = 29;
    pub const ADD_POLL_FD: c_int = 31;
    pub const DEL_POLL_FD: c_int = 32;
    pub const CHANGE_MODE_POLL_FD: c_int = 33;
    pub const LOCK_POLL: c_int = 34;
    pub const UNLOCK_POLL: c_int = 35;
    pub const USER: c_int = 1000;
}

/// `LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT`.
pub const OPTION_REQUIRE_VALID_CLIENT_CERT: c_uint = 1 << 1;
/// `LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT`.
pub const OPTION_ALLOW_NON_SSL_ON_SSL_PORT: c_uint = 1 << 3;
/// `LWS_SERVER_OPTION_EXTERNAL_POLL` (ours): the program polls the descriptors the
/// `*_POLL_FD` reasons report and calls `libwebsocket_service_fd`.
pub const OPTION_EXTERNAL_POLL: c_uint = 1 << 24;

/// `struct libwebsocket_context`.
#[allow(non_camel_case_types)]
pub struct libwebsocket_context {
    inner: RefCell<Option<Context>>,
    /// Set once the Rust context is built; read from any thread.
    cancel: std::sync::OnceLock<CancelHandle>,
    owner: ThreadId,
    user: *mut c_void,
    protocols: *mut libwebsocket_protocols,
    pids: Vec<ProtocolId>,
    hostname: CString,
    /// Its connections between `WSI_CREATE` and `WSI_DESTROY`, by id: a request about
    /// another connection made inside a callback is carried out after it, so it is
    /// checked against this instead, to give a stale `wsi` its -1 at once.
    conns: RefCell<std::collections::HashSet<u64>>,
}

/// Addresses of the live contexts.
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn is_live(p: *const libwebsocket_context) -> bool {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(p as usize))
}

/// The context behind `p`, if it is live and this is its thread.
fn context<'a>(p: *const libwebsocket_context) -> Option<&'a libwebsocket_context> {
    if p.is_null() || !is_live(p) {
        return None;
    }
    // SAFETY: `p` is in LIVE, so it came from `Box::into_raw` in create_context and has
    // not been freed (destroy removes it from LIVE before freeing). Only shared
    // references are ever made to it; its mutable parts are behind a RefCell, touched
    // only by the owner thread (checked here).
    let c = unsafe { &*p };
    (c.owner == std::thread::current().id()).then_some(c)
}

fn handle_of(id: ConnId) -> *mut libwebsocket {
    // The slot plus one: never NULL.
    (id.as_u64() + 1) as *mut libwebsocket
}

fn id_of(wsi: *mut libwebsocket) -> Option<ConnId> {
    (wsi as u64).checked_sub(1).map(ConnId::from_u64)
}

/// What the running callback lends to the API calls made from inside it.
#[derive(Clone, Copy)]
enum Lent {
    Wsi(*mut Wsi<'static>),
    Proto(*mut ProtocolContext<'static>),
}

#[derive(Clone, Copy)]
struct Current {
    ctx: *const libwebsocket_context,
    wsi: *mut libwebsocket,
    lent: Lent,
}

thread_local! {
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

struct Restore(Option<Current>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// What a call finds: the callback's own connection, another callback of the context
/// (requests go through what it lends), or no callback (the context may be borrowed).
enum Access<'a> {
    Own(&'a mut Wsi<'static>),
    /// Lent by a callback of this context.
    Lent(Lent, *const libwebsocket_context),
    Idle,
}

/// Runs `f` with access to `wsi` (NULL: no particular connection) of context `ctx`
/// (NULL: whatever context the running callback is of).
fn with_access<R>(
    ctx: *const libwebsocket_context,
    wsi: *mut libwebsocket,
    f: impl FnOnce(Access<'_>) -> R,
) -> R {
    let cur = CURRENT
        .with(|c| c.get())
        .filter(|c| ctx.is_null() || c.ctx == ctx);
    match cur {
        Some(cur) => {
            // Cleared while `f` runs: `f` calls no C code, and a second `&mut` to the
            // lent objects must not be made from CURRENT meanwhile.
            let _restore = Restore(CURRENT.with(|c| c.replace(None)));
            match cur.lent {
                Lent::Wsi(w) if !wsi.is_null() && cur.wsi == wsi => {
                    // SAFETY: set by `lend` from a live `&mut Wsi` that the callback frame
                    // does not use while the C callback runs; cleared by `lend`'s guard
                    // before that borrow ends; CURRENT is cleared above, so this is the
                    // only reference made from it. The `'static` is never relied on: the
                    // reference does not leave `f`.
                    f(Access::Own(unsafe { &mut *w }))
                }
                lent => f(Access::Lent(lent, cur.ctx)),
            }
        }
        None => f(Access::Idle),
    }
}

/// Runs `f` on the lent object's context requests (for requests about other connections).
macro_rules! on_lent {
    ($lent:expr, |$r:ident| $body:expr) => {
        match $lent {
            // SAFETY: as in `with_access`: a pointer set by `lend` from a live `&mut`,
            // used while CURRENT is cleared, not kept beyond this expression.
            Lent::Wsi(w) => {
                let $r = unsafe { &mut *w };
                $body
            }
            // SAFETY: the same, for the lent ProtocolContext.
            Lent::Proto(p) => {
                let $r = unsafe { &mut *p };
                $body
            }
        }
    };
}

#[derive(Default)]
struct Pss {
    /// `per_session_data_size` zeroed bytes, 16-aligned like malloc's.
    mem: Vec<u128>,
}

struct LwsProto {
    ctx: *mut libwebsocket_context,
    callback: CallbackFn,
    pss_size: usize,
    /// NUL-terminated copies of the `in` strings (URIs, error texts).
    text: Vec<u8>,
}

impl LwsProto {
    fn call(
        &mut self,
        wsi: *mut libwebsocket,
        lent: Lent,
        reason: c_int,
        user: *mut c_void,
        inp: *mut c_void,
        len: usize,
    ) -> c_int {
        let cur = Current {
            ctx: self.ctx,
            wsi,
            lent,
        };
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(cur))));
        // SAFETY: the user's callback from the protocols array, called with lws's
        // arguments: `user` is NULL or this connection's per-session memory, `in` NULL or
        // `len` readable bytes alive for the call.
        unsafe { (self.callback)(self.ctx, wsi, reason, user, inp, len) }
    }

    /// Adds or removes a connection of the context's `conns`.
    fn track(&self, id: ConnId, live: bool) {
        if let Some(c) = self::context(self.ctx) {
            let mut conns = c.conns.borrow_mut();
            if live {
                conns.insert(id.as_u64());
            } else {
                conns.remove(&id.as_u64());
            }
        }
    }

    fn text_ptr(&mut self, s: &str) -> (*mut c_void, usize) {
        self.text.clear();
        self.text.extend_from_slice(s.as_bytes());
        self.text.push(0);
        (self.text.as_mut_ptr().cast(), s.len())
    }
}

fn bytes_ptr(d: &[u8]) -> (*mut c_void, usize) {
    // The callback gets `void *in` as lws gives it; it must not write through it.
    (d.as_ptr().cast_mut().cast(), d.len())
}

impl Protocol for LwsProto {
    type Session = Pss;

    fn callback(&mut self, wsi: &mut Wsi<'_>, pss: &mut Pss, reason: Reason<'_>) -> Result<(), Close> {
        use self::reason as r;
        let none = (std::ptr::null_mut(), 0);
        let (num, (inp, len)) = match reason {
            Reason::WsiCreate => {
                self.track(wsi.id(), true);
                (r::WSI_CREATE, none)
            }
            Reason::ServerNewClientInstantiated => (r::SERVER_NEW_CLIENT_INSTANTIATED, none),
            Reason::FilterProtocolConnection => (r::FILTER_PROTOCOL_CONNECTION, none),
            Reason::Established => (r::ESTABLISHED, none),
            Reason::Receive { data, .. } => (r::RECEIVE, bytes_ptr(data)),
            Reason::ServerWriteable => (r::SERVER_WRITEABLE, none),
            Reason::Closed { .. } => (r::CLOSED, none),
            Reason::PerformClientCertVerification { .. } => (
                r::OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION,
                (std::ptr::null_mut(), 1),
            ),
            Reason::WsiDestroy => {
                self.track(wsi.id(), false);
                (r::WSI_DESTROY, none)
            }
            Reason::FilterHttpConnection { uri } => (r::FILTER_HTTP_CONNECTION, self.text_ptr(uri)),
            Reason::Http { uri } => (r::HTTP, self.text_ptr(uri)),
            Reason::HttpBody { data } => (r::HTTP_BODY, bytes_ptr(data)),
            Reason::HttpBodyCompletion => (r::HTTP_BODY_COMPLETION, none),
            Reason::HttpWriteable => (r::HTTP_WRITEABLE, none),
            Reason::HttpFileCompletion => (r::HTTP_FILE_COMPLETION, none),
            Reason::ClosedHttp => (r::CLOSED_HTTP, none),
            Reason::ClientFilterPreEstablish => (r::CLIENT_FILTER_PRE_ESTABLISH, none),
            Reason::ClientEstablished => (r::CLIENT_ESTABLISHED, none),
            Reason::ClientConnectionError { reason } => (r::CLIENT_CONNECTION_ERROR, self.text_ptr(reason)),
            Reason::ClientReceive { data, .. } => (r::CLIENT_RECEIVE, bytes_ptr(data)),
            Reason::ClientReceivePong { data } => (r::CLIENT_RECEIVE_PONG, bytes_ptr(data)),
            Reason::ClientWriteable => (r::CLIENT_WRITEABLE, none),
            Reason::User { event, data } => (event as c_int, bytes_ptr(data)),
            // lws 1.x has no server-side pong, timer or other reason: not delivered.
            _ => return Ok(()),
        };
        let user = if self.pss_size == 0 {
            std::ptr::null_mut()
        } else {
            if pss.mem.is_empty() {
                pss.mem = vec![0; self.pss_size.div_ceil(16)];
            }
            pss.mem.as_mut_ptr().cast()
        };
        let handle = handle_of(wsi.id());
        let lent = Lent::Wsi((wsi as *mut Wsi<'_>).cast());
        if self.call(handle, lent, num, user, inp, len) != 0 {
            return Err(match num {
                r::FILTER_PROTOCOL_CONNECTION | r::FILTER_HTTP_CONNECTION => {
                    Close::http_status(403, "refused")
                }
                _ => Close::normal(),
            });
        }
        Ok(())
    }

    fn protocol_callback(
        &mut self,
        pctx: &mut ProtocolContext<'_>,
        event: ProtocolEvent,
    ) -> Result<(), Close> {
        use self::reason as r;
        let mut pa = libwebsocket_pollargs {
            fd: -1,
            events: 0,
            prev_events: 0,
        };
        let mut set = |a: PollArgs| {
            pa = libwebsocket_pollargs {
                fd: a.fd,
                events: a.events.into(),
                prev_events: a.prev_events.into(),
            };
        };
        let (num, user) = match event {
            ProtocolEvent::Init => (r::PROTOCOL_INIT, std::ptr::null_mut()),
            ProtocolEvent::Destroy => (r::PROTOCOL_DESTROY, std::ptr::null_mut()),
            // lws 1.x passes the accepted descriptor as `user`.
            ProtocolEvent::FilterNetworkConnection { fd, .. } => {
                (r::FILTER_NETWORK_CONNECTION, fd as isize as *mut c_void)
            }
            ProtocolEvent::AddPollFd(a) => {
                set(a);
                (r::ADD_POLL_FD, std::ptr::null_mut())
            }
            ProtocolEvent::DelPollFd(a) => {
                set(a);
                (r::DEL_POLL_FD, std::ptr::null_mut())
            }
            ProtocolEvent::ChangeModePollFd(a) => {
                set(a);
                (r::CHANGE_MODE_POLL_FD, std::ptr::null_mut())
            }
            ProtocolEvent::LockPoll => (r::LOCK_POLL, std::ptr::null_mut()),
            ProtocolEvent::UnlockPoll => (r::UNLOCK_POLL, std::ptr::null_mut()),
            _ => return Ok(()),
        };
        let inp: *mut c_void = if pa.fd >= 0 {
            (&mut pa as *mut libwebsocket_pollargs).cast()
        } else {
            std::ptr::null_mut()
        };
        let lent = Lent::Proto((pctx as *mut ProtocolContext<'_>).cast());
        if self.call(std::ptr::null_mut(), lent, num, user, inp, 0) != 0 {
            return Err(Close::normal());
        }
        Ok(())
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn opt_str(p: *const c_char) -> Option<String> {
    // SAFETY: passed on from the caller.
    unsafe { crate::cstr(p) }.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `struct libwebsocket_context *libwebsocket_create_context(struct
/// lws_context_creation_info *info)`: a context listening on `info->port` with the
/// protocols of `info->protocols` (ended by a NULL callback; the array is written to:
/// `owning_server`, `protocol_index`, and must outlive the context). NULL on error (a
/// bad argument, the port taken, unreadable certificates: logged).
///
/// # Safety
/// `info` is NULL or a valid creation info whose strings are NUL-terminated and whose
/// protocols array is ended by an entry with a NULL callback.
#[no_mangle]
pub unsafe extern "C" fn libwebsocket_create_context(
    info: *mut lws_context_creation_info,
) -> *mut libwebsocket_context {
    guard(std::ptr::null_mut(), || {
        if info.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: non-NULL, and the caller promises a valid creation info.
        let info = unsafe { &*info };
        if info.protocols.is_null() || !info.extensions.is_null() {
            return std::ptr::null_mut();
        }
        let mut n = 0;
        // SAFETY: the array is ended by an entry with a NULL callback (the caller's
        // promise), so every entry read up to it is in bounds.
        while unsafe { (*info.protocols.add(n)).callback.is_some() } {
            n += 1;
        }
        if n == 0 || n > u16::MAX as usize {
            return std::ptr::null_mut();
        }
        let mut b = Context::builder();
        b = if info.port < 0 {
            b.no_listen()
        } else {
            match u16::try_from(info.port) {
                Ok(p) => b.port(p),
                Err(_) => return std::ptr::null_mut(),
            }
        };
        // SAFETY (all opt_str calls): the creation info's strings are NULL or
        // NUL-terminated (the caller's promise).
        if let Some(i) = unsafe { opt_str(info.iface) } {
            b = b.interface(&i);
        }
        if let Some(c) = unsafe { opt_str(info.ssl_cert_filepath) } {
            b = b.ssl_cert_filepath(c);
        }
        if let Some(k) = unsafe { opt_str(info.ssl_private_key_filepath) } {
            b = b.ssl_private_key_filepath(k);
        }
        if let Some(ca) = unsafe { opt_str(info.ssl_ca_filepath) } {
            b = b.ssl_ca_filepath(ca).ssl_client_certs(ClientCerts::Optional);
        }
        if let Some(l) = unsafe { opt_str(info.ssl_cipher_list) } {
            b = b.ssl_cipher_list(&l);
        }
        if info.options & OPTION_REQUIRE_VALID_CLIENT_CERT != 0 {
            b = b.ssl_client_certs(ClientCerts::Required);
        }
        if info.options & OPTION_ALLOW_NON_SSL_ON_SSL_PORT != 0 {
            b = b.ssl_plain_http(PlainHttp::Serve);
        }
        if info.options & OPTION_EXTERNAL_POLL != 0 {
            b = b.external_poll();
        }
        if info.ka_time > 0 {
            let secs = |s: c_int| Duration::from_secs(s.max(1) as u64);
            b = b.tcp_keepalive(Some((
                secs(info.ka_time),
                info.ka_probes.max(1) as u32,
                secs(info.ka_interval),
            )));
        }
        if let Ok(uid) = u32::try_from(info.uid) {
            b = b.uid(uid);
        }
        if let Ok(gid) = u32::try_from(info.gid) {
            b = b.gid(gid);
        }
        let this = Box::into_raw(Box::new(libwebsocket_context {
            inner: RefCell::new(None),
            cancel: std::sync::OnceLock::new(),
            owner: std::thread::current().id(),
            user: info.user,
            protocols: info.protocols,
            pids: Vec::new(),
            hostname: CString::default(),
            conns: RefCell::default(),
        }));
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `i < n`, within the array (see above).
            let p = unsafe { &mut *info.protocols.add(i) };
            // SAFETY: the name is NULL or NUL-terminated (the caller's promise).
            let name = unsafe { opt_str(p.name) }.unwrap_or_default();
            p.owning_server = this;
            p.protocol_index = i as c_int;
            let handler = LwsProto {
                ctx: this,
                callback: p.callback.expect("counted above"),
                pss_size: p.per_session_data_size,
                text: Vec::new(),
            };
            b = b.protocol_spec(
                ProtocolSpec::new(name.clone(), handler)
                    .rx_buffer_size(p.rx_buffer_size)
                    .id(p.id),
            );
            names.push(name);
        }
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(this as usize);
        let built = b.build();
        // SAFETY: `this` came from Box::into_raw above and is freed only below or by
        // libwebsocket_context_destroy; no other reference to it exists yet.
        let me = unsafe { &mut *this };
        match built {
            Ok(ctx) => {
                let _ = me.cancel.set(ctx.cancel_handle());
                me.pids = names
                    .iter()
                    .map(|n| ctx.protocol_by_name(n).expect("registered"))
                    .collect();
                me.hostname = CString::new(ctx.canonical_hostname()).unwrap_or_default();
                *me.inner.borrow_mut() = Some(ctx);
                this
            }
            Err(e) => {
                log::error!("libwebsocket_create_context: {e}");
                LIVE.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|&p| p != this as usize);
                // SAFETY: from Box::into_raw above, not in LIVE any more, no reference left.
                drop(unsafe { Box::from_raw(this) });
                std::ptr::null_mut()
            }
        }
    })
}

/// `void libwebsocket_context_destroy(struct libwebsocket_context *context)`: closes
/// every connection (their `CLOSED` callbacks run), sends `PROTOCOL_DESTROY`, frees the
/// context. Not from inside one of its callbacks (refused there, logged).
// The pointer is dereferenced only once found in LIVE (see `context`).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn libwebsocket_context_destroy(context: *mut libwebsocket_context) {
    guard((), || {
        let Some(c) = self::context(context) else {
            return;
        };
        let Ok(mut inner) = c.inner.try_borrow_mut() else {
            log::error!("libwebsocket_context_destroy: called from inside its own service");
            return;
        };
        // Dropped while the context is still live: its last callbacks may call the API.
        let ctx = inner.take();
        drop(inner);
        drop(ctx);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != context as usize);
        // SAFETY: from Box::into_raw in create_context; removed from LIVE, so no call
        // reaches it any more, and the references above have ended.
        drop(unsafe { Box::from_raw(context) });
    })
}

/// `int libwebsocket_service(struct libwebsocket_context *context, int timeout_ms)`: waits
/// up to `timeout_ms` for events and services them. 0, or -1 on error (also when called
/// from inside a callback of the same context).
#[no_mangle]
pub extern "C" fn libwebsocket_service(context: *mut libwebsocket_context, timeout_ms: c_int) -> c_int {
    guard(-1, || {
        let Some(c) = self::context(context) else {
            return -1;
        };
        let Ok(mut inner) = c.inner.try_borrow_mut() else {
            return -1;
        };
        let Some(ctx) = inner.as_mut() else {
            return -1;
        };
        match ctx.service(Duration::from_millis(timeout_ms.max(0) as u64)) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("libwebsocket_service: {e}");
                -1
            }
        }
    })
}

/// `int libwebsocket_service_fd(struct libwebsocket_context *context, struct
/// libwebsocket_pollfd *pollfd)`: services one descriptor the program's `poll()` found
/// ready (context created with `LWS_SERVER_OPTION_EXTERNAL_POLL`; the descriptors come
/// with `LWS_CALLBACK_ADD_POLL_FD` / `DEL_POLL_FD` / `CHANGE_MODE_POLL_FD`). Its
/// `revents` is zeroed when it was the context's; a NULL `pollfd` does the work that
/// needs no descriptor (call it once per round). 0, or -1 on error.
///
/// # Safety
/// `pollfd` is NULL or points to a `struct libwebsocket_pollfd`.
#[no_mangle]
pub unsafe extern "C" fn libwebsocket_service_fd(
    context: *mut libwebsocket_context,
    pollfd: *mut libwebsocket_pollfd,
) -> c_int {
    guard(-1, || {
        let Some(c) = self::context(context) else {
            return -1;
        };
        let Ok(mut inner) = c.inner.try_borrow_mut() else {
            return -1;
        };
        let Some(ctx) = inner.as_mut() else {
            return -1;
        };
        if pollfd.is_null() {
            return if ctx.service_pending().is_ok() { 0 } else { -1 };
        }
        // SAFETY: non-NULL, and the caller promises a pollfd.
        let pfd = unsafe { &mut *pollfd };
        match ctx.service_fd(pfd.fd, pfd.revents) {
            Ok(true) => {
                pfd.revents = 0;
                0
            }
            Ok(false) => 0,
            Err(e) => {
                log::warn!("libwebsocket_service_fd: {e}");
                -1
            }
        }
    })
}

/// `void libwebsocket_cancel_service(struct libwebsocket_context *context)`: makes the
/// current or next `libwebsocket_service` return at once. From any thread.
// The pointer is dereferenced only once found in LIVE.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn libwebsocket_cancel_service(context: *mut libwebsocket_context) {
    guard((), || {
        // LIVE stays locked while the context is used: destroy (on the owner thread)
        // removes it from LIVE, under this lock, before freeing it.
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if context.is_null() || !live.contains(&(context as usize)) {
            return;
        }
        // SAFETY: live and kept so (above); only the OnceLock'd CancelHandle is reached,
        // which is Sync and never changed once set.
        let cancel = unsafe { &(*context).cancel };
        if let Some(c) = cancel.get() {
            c.cancel();
        }
    })
}

/// `void *libwebsocket_context_user(struct libwebsocket_context *context)`: the creation
/// info's `user`.
#[no_mangle]
pub extern "C" fn libwebsocket_context_user(context: *mut libwebsocket_context) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        self::context(context).map_or(std::ptr::null_mut(), |c| c.user)
    })
}

/// `const char *libwebsocket_canonical_hostname(struct libwebsocket_context *context)`.
#[no_mangle]
pub extern "C" fn libwebsocket_canonical_hostname(context: *mut libwebsocket_context) -> *const c_char {
    guard(std::ptr::null(), || {
        self::context(context).map_or(std::ptr::null(), |c| c.hostname.as_ptr())
    })
}

/// `const char *lws_get_library_version(void)`.
#[no_mangle]
pub extern "C" fn lws_get_library_version() -> *const c_char {
    static V: &CStr = c"wsreactor 0.1.0 (libwebsockets 1.x API)";
    V.as_ptr()
}

/// Write protocols and flags (`enum libwebsocket_write_protocol`).
pub const LWS_WRITE_TEXT: c_int = 0;
/// A binary message.
pub const LWS_WRITE_BINARY: c_int = 1;
/// A further fragment.
pub const LWS_WRITE_CONTINUATION: c_int = 2;
/// Raw bytes on an HTTP connection.
pub const LWS_WRITE_HTTP: c_int = 3;
/// A close frame (payload: 2-byte code, reason).
pub const LWS_WRITE_CLOSE: c_int = 4;
/// A ping.
pub const LWS_WRITE_PING: c_int = 5;
/// A pong.
pub const LWS_WRITE_PONG: c_int = 6;
/// Flag: not the last fragment.
pub const LWS_WRITE_NO_FIN: c_int = 0x40;

/// `int libwebsocket_write(struct libwebsocket *wsi, unsigned char *buf, size_t len, enum
/// libwebsocket_write_protocol protocol)`: queues a frame on the connection of the
/// running callback (the only one it may write to, as in lws: for others, ask
/// `libwebsocket_callback_on_writable`). The bytes are copied into the connection's out
/// buffer: the `LWS_SEND_BUFFER_PRE_PADDING` / `LWS_PRE` headroom before `buf` is not
/// needed (nor touched). Returns `len`, or -1 (not the running callback's connection,
/// closed, its queue full, a bad fragment sequence or flag).
///
/// # Safety
/// `buf` points to `len` readable bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn libwebsocket_write(
    wsi: *mut libwebsocket,
    buf: *mut u8,
    len: usize,
    protocol: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller promises `len` readable bytes at `buf`.
        let Some(data) = (unsafe { crate::bytes(buf, len as u64) }) else {
            return -1;
        };
        let fin = protocol & LWS_WRITE_NO_FIN == 0;
        let wp = match protocol & !LWS_WRITE_NO_FIN & !0x80 {
            LWS_WRITE_TEXT => WriteProtocol::Text,
            LWS_WRITE_BINARY => WriteProtocol::Binary,
            LWS_WRITE_CONTINUATION => WriteProtocol::Continuation,
            LWS_WRITE_HTTP => WriteProtocol::Http,
            LWS_WRITE_PING => WriteProtocol::Ping,
            LWS_WRITE_PONG => WriteProtocol::Pong,
            LWS_WRITE_CLOSE => {
                return with_access(std::ptr::null(), wsi, |a| match a {
                    Access::Own(w) => {
                        let code = data.get(..2).map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
                        let reason = data.get(2..).map(String::from_utf8_lossy).unwrap_or_default();
                        w.close(code, &reason);
                        len as c_int
                    }
                    _ => -1,
                })
            }
            _ => return -1,
        };
        with_access(std::ptr::null(), wsi, |a| match a {
            Access::Own(w) => match w.write_fragment(data, wp, fin) {
                Ok(()) => c_int::try_from(len).unwrap_or(c_int::MAX),
                Err(_) => -1,
            },
            _ => -1,
        })
    })
}

/// Runs a request about connection `wsi` of `context`: on the running callback's own
/// `Wsi`, through what another running callback lends, or on the idle context.
fn request(
    context: *mut libwebsocket_context,
    wsi: *mut libwebsocket,
    own: impl FnOnce(&mut Wsi<'_>),
    lent: impl FnOnce(&mut wsreactor::ConnRequests<'_>),
    idle: impl FnOnce(&mut Context, ConnId) -> bool,
) -> c_int {
    let Some(id) = id_of(wsi) else {
        return -1;
    };
    with_access(context, wsi, |a| match a {
        Access::Own(w) => {
            own(w);
            1
        }
        // Another connection's request from inside a callback: carried out after the
        // callback returns; a `wsi` that is not one of the context's connections any more
        // gets -1 now.
        Access::Lent(l, ctx) => {
            if !self::context(ctx).is_some_and(|c| c.conns.borrow().contains(&id.as_u64())) {
                return -1;
            }
            on_lent!(l, |r| lent(&mut r.conn(id)));
            1
        }
        Access::Idle => {
            let Some(c) = self::context(context) else {
                return -1;
            };
            let Ok(mut inner) = c.inner.try_borrow_mut() else {
                return -1;
            };
            match inner.as_mut().map(|ctx| idle(ctx, id)) {
                Some(true) => 1,
                _ => -1,
            }
        }
    })
}

/// `int libwebsocket_callback_on_writable(struct libwebsocket_context *context, struct
/// libwebsocket *wsi)`: one `SERVER_WRITEABLE` when the socket can take data. 1, or -1
/// for a closed `wsi` (also from inside a callback about another connection, where the
/// request itself is carried out after that callback).
#[no_mangle]
pub extern "C" fn libwebsocket_callback_on_writable(
    context: *mut libwebsocket_context,
    wsi: *mut libwebsocket,
) -> c_int {
    guard(-1, || {
        if context.is_null() {
            return -1;
        }
        request(
            context,
            wsi,
            |w| w.callback_on_writable(),
            |r| {
                r.callback_on_writable();
            },
            |ctx, id| ctx.callback_on_writable(id),
        )
    })
}

/// `int libwebsocket_rx_flow_control(struct libwebsocket *wsi, int enable)`: pauses (0)
/// or resumes reading the connection. From a callback of its context; 0, or -1.
#[no_mangle]
pub extern "C" fn libwebsocket_rx_flow_control(wsi: *mut libwebsocket, enable: c_int) -> c_int {
    guard(-1, || {
        let on = enable != 0;
        let r = request(
            std::ptr::null_mut(),
            wsi,
            |w| w.rx_flow_control(on),
            |r| {
                r.rx_flow_control(on);
            },
            |_, _| false,
        );
        if r > 0 {
            0
        } else {
            -1
        }
    })
}

/// The context and protocol id of an entry of a context's protocols array.
fn protocol_of(protocol: *const libwebsocket_protocols) -> Option<(*mut libwebsocket_context, ProtocolId)> {
    if protocol.is_null() {
        return None;
    }
    // SAFETY: the caller of the API passes an entry of the protocols array it gave to
    // create_context (lws's contract); only the two fields written there are read, and
    // the context found is checked for liveness before use.
    let (ctx, index) = unsafe { ((*protocol).owning_server, (*protocol).protocol_index) };
    let c = self::context(ctx)?;
    // The pointer must be that entry of the context's array, not a copy or a stranger.
    let i = usize::try_from(index).ok().filter(|&i| i < c.pids.len())?;
    // SAFETY: `i` is within the array, whose base the context kept.
    (std::ptr::eq(unsafe { c.protocols.add(i) }, protocol)).then(|| (ctx, c.pids[i]))
}

fn all_protocol(
    protocol: *const libwebsocket_protocols,
    lent: impl FnOnce(Lent, ProtocolId),
    idle: impl FnOnce(&mut Context, ProtocolId),
) -> c_int {
    let Some((ctx, pid)) = protocol_of(protocol) else {
        return -1;
    };
    with_access(ctx, std::ptr::null_mut(), |a| match a {
        Access::Own(_) => unreachable!("no wsi asked for"),
        Access::Lent(l, _) => {
            lent(l, pid);
            0
        }
        Access::Idle => {
            let Some(c) = self::context(ctx) else {
                return -1;
            };
            let Ok(mut inner) = c.inner.try_borrow_mut() else {
                return -1;
            };
            match inner.as_mut() {
                Some(context) => {
                    idle(context, pid);
                    0
                }
                None => -1,
            }
        }
    })
}

/// `int libwebsocket_callback_on_writable_all_protocol(const struct libwebsocket_protocols
/// *protocol)`: a WRITEABLE for every connection of `protocol` (an entry of the array the
/// context was created with). 0, or -1.
#[no_mangle]
pub extern "C" fn libwebsocket_callback_on_writable_all_protocol(
    protocol: *const libwebsocket_protocols,
) -> c_int {
    guard(-1, || {
        all_protocol(
            protocol,
            |l, pid| on_lent!(l, |r| r.callback_on_writable_all_protocol(pid)),
            |c, pid| c.callback_on_writable_all_protocol(pid),
        )
    })
}

/// `void libwebsocket_rx_flow_allow_all_protocol(const struct libwebsocket_protocols
/// *protocol)`: resumes reading on every paused connection of `protocol`.
#[no_mangle]
pub extern "C" fn libwebsocket_rx_flow_allow_all_protocol(protocol: *const libwebsocket_protocols) {
    guard((), || {
        all_protocol(
            protocol,
            |l, pid| on_lent!(l, |r| r.rx_flow_allow_all_protocol(pid)),
            |c, pid| c.rx_flow_allow_all_protocol(pid),
        );
    })
}

/// `int libwebsocket_callback_all_protocol(const struct libwebsocket_protocols *protocol,
/// int reason)`: calls every WebSocket connection of `protocol` with `reason` (the user's
/// reasons, `LWS_CALLBACK_USER` and above, `in` NULL). 0, or -1.
#[no_mangle]
pub extern "C" fn libwebsocket_callback_all_protocol(
    protocol: *const libwebsocket_protocols,
    reason: c_int,
) -> c_int {
    guard(-1, || {
        let Ok(event) = u32::try_from(reason) else {
            return -1;
        };
        if reason < self::reason::USER {
            return -1;
        }
        all_protocol(
            protocol,
            |l, pid| on_lent!(l, |r| r.callback_all_protocol(pid, event, &[])),
            |c, pid| c.callback_all_protocol(pid, event, &[]),
        )
    })
}

/// Runs `f` on the running callback's own connection `wsi`; `err` otherwise.
fn own<R>(wsi: *mut libwebsocket, err: R, f: impl FnOnce(&mut Wsi<'_>) -> R) -> R {
    with_access(std::ptr::null(), wsi, |a| match a {
        Access::Own(w) => f(w),
        _ => err,
    })
}

/// `size_t libwebsockets_remaining_packet_payload(struct libwebsocket *wsi)`: in
/// `RECEIVE`, the bytes of the frame still to come (0 elsewhere).
#[no_mangle]
pub extern "C" fn libwebsockets_remaining_packet_payload(wsi: *mut libwebsocket) -> usize {
    guard(0, || own(wsi, 0, |w| w.remaining_packet_payload() as usize))
}

/// `int lws_frame_is_binary(struct libwebsocket *wsi)`: in `RECEIVE`, 1 for a binary
/// message (0 elsewhere).
#[no_mangle]
pub extern "C" fn lws_frame_is_binary(wsi: *mut libwebsocket) -> c_int {
    guard(0, || own(wsi, 0, |w| w.frame_is_binary().into()))
}

/// `int libwebsocket_is_final_fragment(struct libwebsocket *wsi)`: in `RECEIVE`, 1 when
/// this piece ends the message (0 elsewhere).
#[no_mangle]
pub extern "C" fn libwebsocket_is_final_fragment(wsi: *mut libwebsocket) -> c_int {
    guard(0, || own(wsi, 0, |w| w.is_final_fragment().into()))
}

/// `int lws_is_final_fragment(struct libwebsocket *wsi)`: the same, by its later name.
#[no_mangle]
pub extern "C" fn lws_is_final_fragment(wsi: *mut libwebsocket) -> c_int {
    libwebsocket_is_final_fragment(wsi)
}

/// `int lws_partial_buffered(struct libwebsocket *wsi)`: 1 while output waits for the
/// socket (for the running callback's connection).
#[no_mangle]
pub extern "C" fn lws_partial_buffered(wsi: *mut libwebsocket) -> c_int {
    guard(0, || own(wsi, 0, |w| w.partial_buffered().into()))
}

/// `int lws_is_ssl(struct libwebsocket *wsi)`.
#[no_mangle]
pub extern "C" fn lws_is_ssl(wsi: *mut libwebsocket) -> c_int {
    guard(0, || own(wsi, 0, |w| w.is_ssl().into()))
}

/// `int libwebsocket_get_socket_fd(struct libwebsocket *wsi)`: -1 outside its callbacks.
#[no_mangle]
pub extern "C" fn libwebsocket_get_socket_fd(wsi: *mut libwebsocket) -> c_int {
    guard(-1, || own(wsi, -1, |w| w.socket_fd()))
}

/// `const struct libwebsocket_protocols *libwebsockets_get_protocol(struct libwebsocket
/// *wsi)`: its entry of the protocols array; NULL outside its callbacks.
#[no_mangle]
pub extern "C" fn libwebsockets_get_protocol(wsi: *mut libwebsocket) -> *const libwebsocket_protocols {
    guard(std::ptr::null(), || {
        let Some(cur) = CURRENT.with(|c| c.get()) else {
            return std::ptr::null();
        };
        let Some(c) = self::context(cur.ctx) else {
            return std::ptr::null();
        };
        let index = own(wsi, None, |w| Some(w.protocol()));
        match index.and_then(|p| c.pids.iter().position(|&q| q == p)) {
            // SAFETY: `i` is within the array the context was created with.
            Some(i) => unsafe { c.protocols.add(i) },
            None => std::ptr::null(),
        }
    })
}

fn fill(buf: *mut c_char, cap: c_int, text: &str) {
    let Ok(cap) = usize::try_from(cap) else {
        return;
    };
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = text.len().min(cap - 1);
    // SAFETY: the caller of the API gave `cap` writable bytes at `buf`; `n + 1 <= cap`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast(), n);
        *buf.add(n) = 0;
    }
}

/// `void libwebsockets_get_peer_addresses(struct libwebsocket_context *context, struct
/// libwebsocket *wsi, int fd, char *name, int name_len, char *rip, int rip_len)`: the
/// peer of socket `fd`: its host name (reverse lookup, as lws does; it may block) and its
/// IP text, truncated to fit, empty strings when unknown.
///
/// # Safety
/// `name` and `rip` are NULL or have `name_len` / `rip_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn libwebsockets_get_peer_addresses(
    context: *mut libwebsocket_context,
    wsi: *mut libwebsocket,
    fd: c_int,
    name: *mut c_char,
    name_len: c_int,
    rip: *mut c_char,
    rip_len: c_int,
) {
    guard((), || {
        let _ = (context, wsi);
        fill(name, name_len, "");
        fill(rip, rip_len, "");
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getpeername writes at most `sl` bytes into `ss`, which has them; a bad
        // `fd` gives an error, nothing else.
        if unsafe { libc::getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl) } != 0 {
            return;
        }
        let mut host = [0 as c_char; 256];
        let mut ip = [0 as c_char; 64];
        // SAFETY: `ss`/`sl` as filled above; the output buffers' sizes are passed.
        let numeric = unsafe {
            libc::getnameinfo(
                (&ss as *const libc::sockaddr_storage).cast(),
                sl,
                ip.as_mut_ptr(),
                ip.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                libc::NI_NUMERICHOST,
            )
        };
        if numeric != 0 {
            return;
        }
        // SAFETY: getnameinfo succeeded: `ip` holds a NUL-terminated string.
        let ip_text = unsafe { CStr::from_ptr(ip.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        fill(rip, rip_len, &ip_text);
        // SAFETY: as above.
        let named = unsafe {
            libc::getnameinfo(
                (&ss as *const libc::sockaddr_storage).cast(),
                sl,
                host.as_mut_ptr(),
                host.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                0,
            )
        };
        if named == 0 {
            // SAFETY: getnameinfo succeeded: `host` holds a NUL-terminated string.
            fill(
                name,
                name_len,
                &unsafe { CStr::from_ptr(host.as_ptr()) }.to_string_lossy(),
            );
        } else {
            fill(name, name_len, &ip_text);
        }
    })
}

/// `int libwebsockets_return_http_status(struct libwebsocket_context *context, struct
/// libwebsocket *wsi, unsigned int code, const char *html_body)`: answers the HTTP request
/// of the running callback with `code` and a small page (`html_body` as its text,
/// escaped). 0, or -1.
///
/// # Safety
/// `html_body` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn libwebsockets_return_http_status(
    context: *mut libwebsocket_context,
    wsi: *mut libwebsocket,
    code: c_uint,
    html_body: *const c_char,
) -> c_int {
    guard(-1, || {
        let _ = context;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let body = unsafe { opt_str(html_body) };
        let Ok(code) = u16::try_from(code) else {
            return -1;
        };
        own(wsi, -1, |w| {
            if w.return_http_status(code, body.as_deref()).is_ok() {
                0
            } else {
                -1
            }
        })
    })
}

/// `int libwebsockets_serve_http_file(struct libwebsocket_context *context, struct
/// libwebsocket *wsi, const char *file, const char *content_type, const char
/// *other_headers, int other_headers_len)`: answers the HTTP request of the running
/// callback with the file (`other_headers`: raw `Name: value\r\n` lines, or NULL). 0 when
/// the transfer started (`HTTP_FILE_COMPLETION` follows), -1 on error (no such file, not
/// an HTTP request, already answered).
///
/// # Safety
/// `file` and `content_type` are NUL-terminated; `other_headers` is NULL or has
/// `other_headers_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn libwebsockets_serve_http_file(
    context: *mut libwebsocket_context,
    wsi: *mut libwebsocket,
    file: *const c_char,
    content_type: *const c_char,
    other_headers: *const c_char,
    other_headers_len: c_int,
) -> c_int {
    guard(-1, || {
        let _ = context;
        // SAFETY: the caller promises NUL-terminated strings.
        let (Some(file), Some(ct)) = (unsafe { opt_str(file) }, unsafe { opt_str(content_type) }) else {
            return -1;
        };
        let extra = if other_headers.is_null() || other_headers_len <= 0 {
            String::new()
        } else {
            // SAFETY: the caller promises `other_headers_len` readable bytes.
            let b =
                unsafe { std::slice::from_raw_parts(other_headers.cast::<u8>(), other_headers_len as usize) };
            String::from_utf8_lossy(b).into_owned()
        };
        let headers: Vec<(&str, &str)> = extra
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim(), v.trim()))
            .filter(|(n, _)| !n.is_empty())
            .collect();
        own(wsi, -1, |w| {
            if w.serve_http_file(&file, &ct, &headers).is_ok() {
                0
            } else {
                -1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_unknown_arguments_get_errors() {
        // SAFETY: NULLs are what is checked.
        unsafe {
            assert!(libwebsocket_create_context(std::ptr::null_mut()).is_null());
            assert_eq!(
                libwebsocket_service_fd(std::ptr::null_mut(), std::ptr::null_mut()),
                -1
            );
            assert_eq!(
                libwebsocket_write(7 as *mut libwebsocket, c"x".as_ptr().cast_mut().cast(), 1, 0),
                -1
            );
        }
        let bogus = 0x1000 as *mut libwebsocket_context;
        assert_eq!(libwebsocket_service(bogus, 0), -1);
        assert!(libwebsocket_context_user(bogus).is_null());
        assert_eq!(
            libwebsocket_callback_on_writable(bogus, 7 as *mut libwebsocket),
            -1
        );
        assert_eq!(
            libwebsocket_callback_on_writable_all_protocol(std::ptr::null()),
            -1
        );
        assert_eq!(libwebsocket_rx_flow_control(std::ptr::null_mut(), 1), -1);
        assert_eq!(lws_frame_is_binary(7 as *mut libwebsocket), 0);
        libwebsocket_cancel_service(bogus);
        libwebsocket_context_destroy(bogus);
    }
}
