//! The wsServer API (`include/ws.h`) over a wsreactor [`Context`].
//!
//! wsServer runs a thread per client; here every server created by [`ws_socket`] is one
//! reactor loop, on the caller's thread (`thread_loop == 0`, the call blocks) or on a
//! thread of its own (`thread_loop == 1`, the call returns once the port is bound). The
//! events (`onopen`, `onclose`, `onmessage`) are called on the loop's thread; `onmessage`
//! gets whole messages, NUL-terminated (as wsServer's), however they were fragmented.
//!
//! **Handles.** A `ws_cli_conn_t *` is never a pointer to memory: its bits name the
//! server (12 bits), the connection's slot in the reactor (20 bits) and the slot's
//! generation (32 bits). Every call looks the handle up in its server's table of open
//! clients, so a handle of a closed client gets -1 (or NULL), never another client.
//!
//! **Threads.** Every function may be called from any thread. Inside an event callback,
//! calls about the client of that callback act on the connection directly (through the
//! callback's `Wsi`, without locks): the server records which connection its loop
//! thread's running callback lends, and a call takes that route only from the loop
//! thread itself (compared by thread pointer, `pthread_self`'s value) and for that client's
//! handle. Any other call is queued
//! on its server's command list and the loop is woken (with the context's
//! [`CancelHandle`]); the loop serves the queue after each `service()` by asking a
//! WRITEABLE callback of each client concerned, where the queued frames are written. The
//! reactor itself is only touched from its own thread. A send from another thread
//! returns the message length once queued (the client was open then); its bytes count
//! against [`ws_set_max_queued`] until written.

use crate::{bytes, cstr, guard};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_uchar};
use std::net::IpAddr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use wsreactor::{
    CancelHandle, Close, ConnId, Context, Protocol, ProtocolId, Reason, WriteError, WriteProtocol, Wsi,
};

/// wsServer's client type; only pointers to it exist, and they are handles, not memory.
#[repr(C)]
pub struct ws_cli_conn_t {
    _opaque: [u8; 0],
}

/// `void (*onopen)(ws_cli_conn_t *client)` and `onclose`.
pub type WsConnEvent = Option<unsafe extern "C" fn(*mut ws_cli_conn_t)>;
/// `void (*onmessage)(ws_cli_conn_t *client, const unsigned char *msg, uint64_t size, int type)`.
pub type WsMsgEvent = Option<unsafe extern "C" fn(*mut ws_cli_conn_t, *const c_uchar, u64, c_int)>;

/// wsServer's `struct ws_events`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ws_events {
    /// Called when a client completed its handshake.
    pub onopen: WsConnEvent,
    /// Called when a client's connection closed (after its last message).
    pub onclose: WsConnEvent,
    /// Called with each whole message.
    pub onmessage: WsMsgEvent,
}

type MsgFn = unsafe extern "C" fn(*mut ws_cli_conn_t, *const c_uchar, u64, c_int);

/// Stands in for a NULL `onmessage`.
extern "C" fn no_onmessage(_: *mut ws_cli_conn_t, _: *const c_uchar, _: u64, _: c_int) {}

/// Frame types of `ws.h`.
pub const WS_FR_OP_CONT: c_int = 0;
/// A text message.
pub const WS_FR_OP_TXT: c_int = 1;
/// A binary message.
pub const WS_FR_OP_BIN: c_int = 2;
/// A close frame.
pub const WS_FR_OP_CLSE: c_int = 8;
/// A ping.
pub const WS_FR_OP_PING: c_int = 9;
/// A pong.
pub const WS_FR_OP_PONG: c_int = 10;
/// Client states of `ws.h`.
pub const WS_STATE_CONNECTING: c_int = 0;
/// The client completed its handshake.
pub const WS_STATE_OPEN: c_int = 1;
/// A close was asked for or started.
pub const WS_STATE_CLOSING: c_int = 2;
/// The connection is closed (seen only during `onclose`; after it the handle is stale).
pub const WS_STATE_CLOSED: c_int = 3;

const KEY_BITS: u32 = 20;
const MAX_SERVERS: usize = 1 << 12;

/// The bound on bytes queued from other threads per client (see [`ws_set_max_queued`]).
static MAX_QUEUED: AtomicU64 = AtomicU64::new(64 << 20);

/// Every server made by `ws_socket`, by index (the index is part of handles). A server
/// lives as long as the process (its loop ends only on a fatal error, and handles of its
/// clients may still be used then), so slots hold leaked boxes, read without a lock.
static SERVERS: [OnceLock<&'static Server>; MAX_SERVERS] = [const { OnceLock::new() }; MAX_SERVERS];

/// How many slots of [`SERVERS`] are taken; the lock orders their creation.
static SERVER_COUNT: Mutex<usize> = Mutex::new(0);

/// Loop threads of servers made with `thread_loop == 1`, for [`ws_start`].
static THREADS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock was held left consistent data (every update is one insert,
    // remove or field store), so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The servers made so far.
fn servers() -> impl Iterator<Item = &'static Server> {
    let n = *lock(&SERVER_COUNT);
    SERVERS[..n].iter().filter_map(|s| s.get().copied())
}

/// The calling thread's identity, unique among live threads (never 0): its thread
/// pointer, the address of its thread control block, which is also what `pthread_self`
/// returns there.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn this_thread() -> u64 {
    let tp: u64;
    // SAFETY: on x86-64 Linux the `%fs` segment base is the thread pointer, and the
    // x86-64 ELF TLS ABI (TLS variant II, followed by glibc and musl) requires the word
    // at the thread pointer to hold the thread pointer itself: that is how compiled code
    // reads it (`mov %fs:0`) for local-exec and initial-exec thread-locals. The read
    // touches only the calling thread's control block, written once by the C runtime
    // when the thread was made; live threads have distinct control blocks. It saves a
    // call to pthread_self (the same value), and the registers saved around that call,
    // on the per-message send path: 6 instructions per message under callgrind.
    unsafe {
        std::arch::asm!(
            "mov {}, qword ptr fs:[0]",
            out(reg) tp,
            options(nostack, preserves_flags, readonly, pure)
        );
    }
    tp
}

/// The calling thread's identity, unique among live threads (never 0).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn this_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail; pthread_t is an integer
    // on the Unix targets this crate builds for.
    unsafe { libc::pthread_self() as u64 }
}

/// Each server's [`Lent`], by server index, in a static array so that a send finds it
/// from the handle's bits alone.
static LENT: [Lent; MAX_SERVERS] = [const { Lent::new() }; MAX_SERVERS];

/// What one server shares between its loop thread and the other threads.
struct Server {
    idx: u16,
    waker: CancelHandle,
    lent: &'static Lent,
    /// Commands from outside the current callback, served after each `service()`.
    cmds: Mutex<Vec<(u64, Cmd)>>,
    /// The open clients by handle.
    clients: Mutex<HashMap<u64, Client>>,
}

/// The connection of the callback running on a server's loop thread, lent to the API
/// calls C makes from inside it. Only the loop thread stores or dereferences the pointers
/// (the atomics let other threads read `handle` without a data race, and then they take
/// the queued route since they are not the loop thread); `handle` [`NOT_LENT`] means
/// nothing is lent. One cache line each, so that servers on different threads do not
/// share one.
#[repr(align(64))]
struct Lent {
    /// The loop thread ([`this_thread`]), set before the server's first connection.
    thread: AtomicU64,
    handle: AtomicU64,
    wsi: AtomicPtr<Wsi<'static>>,
    sess: AtomicPtr<Session>,
    proto: AtomicPtr<WsProto>,
}

struct Client {
    id: ConnId,
    state: c_int,
    fd: c_int,
    addr: IpAddr,
    /// Bytes queued through `cmds` and not yet written.
    queued: u64,
}

#[derive(Clone)]
enum Cmd {
    Frame(WriteProtocol, Arc<[u8]>),
    Close,
    Ping(c_int),
}

/// [`Lent::handle`] when nothing is lent: no handle has these bits (slot bits 0), not
/// even NULL (0), so a send compares handles without testing for NULL first.
const NOT_LENT: u64 = 1 << KEY_BITS;

impl Lent {
    const fn new() -> Lent {
        Lent {
            thread: AtomicU64::new(0),
            handle: AtomicU64::new(NOT_LENT),
            wsi: AtomicPtr::new(std::ptr::null_mut()),
            sess: AtomicPtr::new(std::ptr::null_mut()),
            proto: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn on_loop_thread(&self) -> bool {
        this_thread() == self.thread.load(Ordering::Relaxed)
    }

    /// Lends the callback's connection to the calls C makes until [`unlend`](Self::unlend).
    /// Called on the loop thread only (from the protocol callback).
    #[inline]
    fn lend(&self, handle: u64, wsi: &mut Wsi<'_>, sess: &mut Session, proto: &mut WsProto) {
        self.wsi.store((wsi as *mut Wsi<'_>).cast(), Ordering::Relaxed);
        self.sess.store(sess, Ordering::Relaxed);
        self.proto.store(proto, Ordering::Relaxed);
        self.handle.store(handle, Ordering::Relaxed);
    }

    /// Ends the lending: the borrows behind the pointers end when the callback returns.
    /// (Callbacks do not nest: nothing a lent connection does calls a callback; were one
    /// to, the inner unlend would only send the outer callback's later calls the queued
    /// way, which is slower but as correct.)
    #[inline]
    fn unlend(&self) {
        self.handle.store(NOT_LENT, Ordering::Relaxed);
    }
}

impl Server {
    fn on_loop_thread(&self) -> bool {
        self.lent.on_loop_thread()
    }

    /// Queues `cmd` for `handle` (an open client) and wakes the loop unless this is it.
    fn queue(&self, handle: u64, cmd: Cmd) -> bool {
        let len = match &cmd {
            Cmd::Frame(_, d) => d.len() as u64,
            _ => 0,
        };
        {
            let mut clients = lock(&self.clients);
            let Some(c) = clients.get_mut(&handle) else {
                return false;
            };
            if c.state != WS_STATE_OPEN || c.queued + len > MAX_QUEUED.load(Ordering::Relaxed) {
                return false;
            }
            c.queued += len;
            if matches!(cmd, Cmd::Close) {
                c.state = WS_STATE_CLOSING;
            }
        }
        lock(&self.cmds).push((handle, cmd));
        if !self.on_loop_thread() {
            self.waker.cancel();
        }
        true
    }

    /// Handles of the open clients.
    fn open_clients(&self) -> Vec<u64> {
        lock(&self.clients)
            .iter()
            .filter(|(_, c)| c.state == WS_STATE_OPEN)
            .map(|(&h, _)| h)
            .collect()
    }
}

fn handle_of(server: u16, id: ConnId) -> Option<u64> {
    let n = id.as_u64();
    let key = n & 0xffff_ffff;
    if key + 1 >= 1 << KEY_BITS {
        return None;
    }
    Some((n & !0xffff_ffff) | (server as u64) << KEY_BITS | (key + 1))
}

/// The [`Lent`] of the server a handle names.
fn lent_of(handle: u64) -> &'static Lent {
    &LENT[((handle & 0xffff_ffff) >> KEY_BITS) as usize % MAX_SERVERS]
}

fn server_of(handle: u64) -> Option<&'static Server> {
    let idx = (handle & 0xffff_ffff) >> KEY_BITS;
    SERVERS.get(idx as usize)?.get().copied()
}

thread_local! {
    static ADDRESS: std::cell::RefCell<[u8; 64]> = const { std::cell::RefCell::new([0; 64]) };
}

/// The lent connection, if `handle` is the client of the callback running on this thread.
///
/// # Safety
/// The references must not outlive the API call that asked for them, that call must not
/// call into C (or anything that could reach this function again) while it holds them,
/// and it must not ask again while they are alive.
#[inline(always)]
unsafe fn lent<'a>(l: &Lent, handle: u64) -> Option<(&'a mut Wsi<'a>, &'a mut Session, &'a mut WsProto)> {
    if l.handle.load(Ordering::Relaxed) != handle || !l.on_loop_thread() {
        return None;
    }
    let (wsi, sess, proto) = (
        l.wsi.load(Ordering::Relaxed),
        l.sess.load(Ordering::Relaxed),
        l.proto.load(Ordering::Relaxed),
    );
    // SAFETY: a nonzero `handle` on the loop thread means the loop thread's callback is
    // between `lend` and `unlend` (both run on the loop thread, in program order with this
    // load): the pointers come from three distinct live `&mut` borrows that the callback
    // frame does not use while the C code it called runs (it passed them on as these
    // pointers only), and `unlend` runs before those borrows end. The caller keeps the
    // references within one API call made from that C code, makes no second set, and
    // calls nothing that could; the `'a` of the `Wsi` (really the callback's) is never
    // relied on beyond that.
    Some(unsafe { (&mut *wsi.cast::<Wsi<'a>>(), &mut *sess, &mut *proto) })
}

/// [`lent`] without the session, for the send path (an atomic load is not optimized
/// away when its value goes unused).
///
/// # Safety
/// As for [`lent`].
#[inline(always)]
unsafe fn lent_for_send<'a>(l: &Lent, handle: u64) -> Option<(&'a mut Wsi<'a>, &'a mut WsProto)> {
    if l.handle.load(Ordering::Relaxed) != handle || !l.on_loop_thread() {
        return None;
    }
    let (wsi, proto) = (l.wsi.load(Ordering::Relaxed), l.proto.load(Ordering::Relaxed));
    // SAFETY: as in `lent`, whose contract the caller keeps.
    Some(unsafe { (&mut *wsi.cast::<Wsi<'a>>(), &mut *proto) })
}

/// Runs `f` on the lent connection if `handle` is the client of the callback running on
/// this thread.
fn with_current<R>(
    srv: &Server,
    handle: u64,
    f: impl FnOnce(&mut Wsi<'_>, &mut Session, &mut WsProto) -> R,
) -> Option<R> {
    // SAFETY: the references live only in `f`, which is Rust code of this module that
    // does not call into C.
    let (wsi, sess, proto) = unsafe { lent(srv.lent, handle) }?;
    Some(f(wsi, sess, proto))
}

#[derive(Default)]
struct Session {
    handle: u64,
    /// A message arriving in pieces, collected to be delivered whole.
    msg: Vec<u8>,
    binary: bool,
    /// Ping ids sent and the last one answered (wsServer's liveness check).
    ping_sent: i32,
    pong_last: i32,
}

struct WsProto {
    srv: Option<&'static Server>,
    /// The server's [`Lent`] (known before the server is).
    lent: &'static Lent,
    evs: ws_events,
    /// `evs.onmessage`, or a no-op: one test less per message.
    onmessage: MsgFn,
    /// Frames and commands waiting for each client's WRITEABLE callback.
    pending: HashMap<u64, VecDeque<Cmd>>,
    /// Whole messages in one piece that the reactor could not hand with a NUL after them
    /// (they ended a read: `Reason::Receive`, not `receive_with_nul`), copied to get it.
    scratch: Vec<u8>,
}

impl WsProto {
    fn srv(&self) -> &'static Server {
        self.srv.expect("registered before the first connection")
    }
}

fn wp_of(ty: c_int) -> Option<WriteProtocol> {
    Some(match ty {
        WS_FR_OP_TXT => WriteProtocol::Text,
        WS_FR_OP_BIN => WriteProtocol::Binary,
        WS_FR_OP_PING => WriteProtocol::Ping,
        WS_FR_OP_PONG => WriteProtocol::Pong,
        _ => return None,
    })
}

/// One command for the client of the running callback. False when it must wait for the
/// next WRITEABLE (back-pressure).
fn apply(wsi: &mut Wsi<'_>, sess: &mut Session, srv: &Server, cmd: &Cmd) -> Result<bool, WriteError> {
    match cmd {
        Cmd::Frame(wp, data) => match wsi.write(data, *wp) {
            Err(WriteError::BackPressure) => return Ok(false),
            r => r?,
        },
        Cmd::Close => {
            set_state(srv, sess.handle, WS_STATE_CLOSING);
            wsi.close(1000, "");
        }
        Cmd::Ping(threshold) => ping(wsi, sess, srv, *threshold),
    }
    Ok(true)
}

fn set_state(srv: &Server, handle: u64, state: c_int) {
    if let Some(c) = lock(&srv.clients).get_mut(&handle) {
        c.state = state;
    }
}

/// wsServer's `ws_ping`: drops the client when more than `threshold` pings went
/// unanswered, else sends the next ping, its id as 4 big-endian bytes.
fn ping(wsi: &mut Wsi<'_>, sess: &mut Session, srv: &Server, threshold: c_int) {
    if sess.ping_sent.wrapping_sub(sess.pong_last) > threshold.max(0) {
        set_state(srv, sess.handle, WS_STATE_CLOSING);
        wsi.close(1008, "ping timeout");
        return;
    }
    sess.ping_sent = sess.ping_sent.wrapping_add(1);
    let _ = wsi.write(&sess.ping_sent.to_be_bytes(), WriteProtocol::Ping);
}

#[cold]
fn grow(buf: &mut Vec<u8>, len: usize) {
    buf.resize(len, 0);
}

impl WsProto {
    /// Calls `onmessage` with `len` bytes at `msg` (followed by a NUL), the connection lent.
    #[inline]
    fn call_onmessage(
        &mut self,
        wsi: &mut Wsi<'_>,
        sess: &mut Session,
        msg: *const u8,
        len: usize,
        binary: bool,
    ) {
        let (onmessage, lent) = (self.onmessage, self.lent);
        let ty = if binary { WS_FR_OP_BIN } else { WS_FR_OP_TXT };
        let handle = sess.handle;
        lent.lend(handle, wsi, sess, self);
        // SAFETY: a function pointer from the user's `ws_events`, called with its
        // documented arguments; the caller guarantees `len` bytes and a NUL at `msg`,
        // in a buffer that nothing reachable from C touches during the call. An
        // `extern "C"` function does not unwind, so `unlend` is reached.
        unsafe { onmessage(handle as *mut ws_cli_conn_t, msg, len as u64, ty) };
        lent.unlend();
    }

    /// A message that arrived whole in one piece but ended a read: copied into the scratch
    /// buffer to get the NUL that wsServer promises after it. The buffer keeps its size
    /// up to 64 KiB, so the copy is one `memcpy` and a store.
    #[inline]
    fn deliver_whole(&mut self, wsi: &mut Wsi<'_>, sess: &mut Session, data: &[u8], binary: bool) {
        let len = data.len();
        if self.scratch.len() <= len {
            grow(&mut self.scratch, len + 1);
        }
        let buf = &mut self.scratch[..=len];
        buf[..len].copy_from_slice(data);
        buf[len] = 0;
        // The heap buffer behind this pointer is not part of `WsProto`'s own bytes, so
        // lending `self` to C (as `&mut WsProto` inside API calls) does not invalidate it;
        // no API call touches `scratch`.
        let msg = buf.as_ptr();
        self.call_onmessage(wsi, sess, msg, len, binary);
        if len >= 64 << 10 {
            self.scratch = Vec::new();
        }
    }

    /// A piece of a message in pieces: collected, and delivered whole after its last.
    #[cold]
    #[inline(never)]
    fn collect(
        &mut self,
        wsi: &mut Wsi<'_>,
        sess: &mut Session,
        data: &[u8],
        binary: bool,
        first: bool,
        last: bool,
    ) {
        if first {
            sess.msg.clear();
            sess.binary = binary;
        }
        sess.msg.extend_from_slice(data);
        if !last {
            return;
        }
        let mut buf = std::mem::take(&mut sess.msg);
        let len = buf.len();
        buf.push(0);
        let binary = sess.binary;
        self.call_onmessage(wsi, sess, buf.as_ptr(), len, binary);
        buf.clear();
        if buf.capacity() <= 64 << 10 {
            // Keep a small buffer for the next fragmented message; give big ones back.
            sess.msg = buf;
        }
    }

    fn event(&mut self, wsi: &mut Wsi<'_>, sess: &mut Session, f: WsConnEvent) {
        if let Some(f) = f {
            let (handle, lent) = (sess.handle, self.lent);
            lent.lend(handle, wsi, sess, self);
            // SAFETY: a function pointer from the user's `ws_events`, called with its
            // documented argument; an `extern "C"` function does not unwind.
            unsafe { f(handle as *mut ws_cli_conn_t) };
            lent.unlend();
        }
    }

    /// Writes what waits for this client, until done or back-pressure.
    fn flush(&mut self, wsi: &mut Wsi<'_>, sess: &mut Session) {
        let Some(q) = self.pending.get_mut(&sess.handle) else {
            return;
        };
        let srv = self.srv.expect("registered");
        let mut written = 0u64;
        while let Some(cmd) = q.front() {
            match apply(wsi, sess, srv, cmd) {
                Ok(false) => {
                    wsi.callback_on_writable();
                    break;
                }
                _ => {
                    if let Cmd::Frame(_, d) = cmd {
                        written += d.len() as u64;
                    }
                    q.pop_front();
                }
            }
        }
        if q.is_empty() {
            self.pending.remove(&sess.handle);
        }
        if let Some(c) = lock(&srv.clients).get_mut(&sess.handle) {
            c.queued = c.queued.saturating_sub(written);
        }
    }

    /// Every reason but a message's piece: off the per-message path.
    #[cold]
    #[inline(never)]
    fn other(&mut self, wsi: &mut Wsi<'_>, sess: &mut Session, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Established => {
                let srv = self.srv();
                let Some(handle) = handle_of(srv.idx, wsi.id()) else {
                    return Err(Close::new(1013, "too many clients"));
                };
                sess.handle = handle;
                let client = Client {
                    id: wsi.id(),
                    state: WS_STATE_OPEN,
                    fd: wsi.socket_fd(),
                    addr: wsi.peer_addr().ip(),
                    queued: 0,
                };
                lock(&srv.clients).insert(handle, client);
                self.event(wsi, sess, self.evs.onopen);
            }
            Reason::ReceivePong { data } => {
                if let Ok(id) = <[u8; 4]>::try_from(data) {
                    sess.pong_last = i32::from_be_bytes(id);
                }
            }
            Reason::ServerWriteable => self.flush(wsi, sess),
            Reason::Closed { .. } if sess.handle != 0 => {
                set_state(self.srv(), sess.handle, WS_STATE_CLOSED);
                self.event(wsi, sess, self.evs.onclose);
                lock(&self.srv().clients).remove(&sess.handle);
                self.pending.remove(&sess.handle);
                sess.handle = 0;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Protocol for WsProto {
    type Session = Session;

    const RECEIVE_WITH_NUL: bool = true;

    /// A whole message with the NUL after it in the reactor's read buffer: handed to C
    /// where it lies, without a copy.
    #[inline]
    fn receive_with_nul(
        &mut self,
        wsi: &mut Wsi<'_>,
        sess: &mut Session,
        msg: &[u8],
        binary: bool,
    ) -> Result<(), Close> {
        if sess.handle != 0 && !msg.is_empty() {
            // `msg` is borrowed for this call, and the read buffer it lies in is not
            // reachable from what is lent to C (the connection, the session, `self`).
            self.call_onmessage(wsi, sess, msg.as_ptr(), msg.len() - 1, binary);
        }
        Ok(())
    }

    // Inlined into the reactor's dispatch: the per-message path is this match, the copy
    // and the call; every other reason goes to the out-of-line `other`.
    #[inline]
    fn callback(&mut self, wsi: &mut Wsi<'_>, sess: &mut Session, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Receive {
                data,
                binary,
                first,
                last,
                ..
            } => {
                if sess.handle != 0 {
                    if first && last {
                        self.deliver_whole(wsi, sess, data, binary);
                    } else {
                        self.collect(wsi, sess, data, binary, first, last);
                    }
                }
                Ok(())
            }
            other => self.other(wsi, sess, other),
        }
    }
}

/// Moves the commands queued from outside callbacks to their clients' pending lists and
/// asks a WRITEABLE callback for each.
fn serve_commands(ctx: &mut Context, pid: ProtocolId, srv: &Server) {
    let cmds = std::mem::take(&mut *lock(&srv.cmds));
    if cmds.is_empty() {
        return;
    }
    let ids: Vec<Option<ConnId>> = {
        let clients = lock(&srv.clients);
        cmds.iter().map(|(h, _)| clients.get(h).map(|c| c.id)).collect()
    };
    let Some(proto) = ctx.protocol_mut::<WsProto>(pid) else {
        return;
    };
    let mut wake = Vec::new();
    for ((h, cmd), id) in cmds.into_iter().zip(ids) {
        if let Some(id) = id {
            proto.pending.entry(h).or_default().push_back(cmd);
            wake.push(id);
        }
    }
    for id in wake {
        ctx.callback_on_writable(id);
    }
}

/// Builds the context, registers the server; then `ready` gets the result of that and
/// the loop runs until `service()` fails.
fn run_server(evs: ws_events, port: u16, timeout_ms: u32, ready: impl FnOnce(bool)) -> c_int {
    // The lock is held until the server is registered: its index (and so its Lent) is
    // reserved before the context is built, and taken only if the build succeeds.
    let mut n = lock(&SERVER_COUNT);
    let idx = *n;
    if idx >= MAX_SERVERS {
        drop(n);
        ready(false);
        return -1;
    }
    let lent = &LENT[idx];
    lent.thread.store(this_thread(), Ordering::Relaxed);
    let mut b = Context::builder().port(port).accept_any_protocol(true).protocol(
        "wsserver",
        WsProto {
            srv: None,
            lent,
            evs,
            onmessage: evs.onmessage.unwrap_or(no_onmessage),
            pending: HashMap::new(),
            scratch: Vec::new(),
        },
    );
    if timeout_ms > 0 {
        b = b.close_timeout(Duration::from_millis(timeout_ms.into()));
    }
    if let Ok(iface) = std::env::var("WSREACTOR_INTERFACE") {
        b = b.interface(&iface);
    }
    let mut ctx = match b.build() {
        Ok(c) => c,
        Err(e) => {
            drop(n);
            log::error!("ws_socket: port {port}: {e}");
            ready(false);
            return -1;
        }
    };
    let pid = ctx.protocol_by_name("wsserver").expect("registered above");
    let srv: &'static Server = Box::leak(Box::new(Server {
        idx: idx as u16,
        waker: ctx.cancel_handle(),
        lent,
        cmds: Mutex::new(Vec::new()),
        clients: Mutex::new(HashMap::new()),
    }));
    // The slot is free: slots are taken in order under SERVER_COUNT's lock.
    let _ = SERVERS[idx].set(srv);
    *n += 1;
    drop(n);
    ctx.protocol_mut::<WsProto>(pid).expect("registered above").srv = Some(srv);
    ready(true);
    loop {
        if let Err(e) = ctx.service(Duration::from_secs(1)) {
            log::error!("ws_socket: service: {e}");
            return -1;
        }
        serve_commands(&mut ctx, pid, srv);
    }
}

/// `int ws_socket(struct ws_events *evs, uint16_t port, int thread_loop, uint32_t timeout_ms)`:
/// listens on `port` (all interfaces, or `$WSREACTOR_INTERFACE`) and serves clients with
/// `evs`. With `thread_loop == 0` it runs the loop on the calling thread and returns only
/// on a fatal error (-1); otherwise it runs it on a new thread and returns 0 once the
/// port is bound (-1 if it could not be). `timeout_ms` (0: 5 s) bounds the closing
/// handshake.
///
/// # Safety
/// `evs` is NULL or points to a `struct ws_events` (it is copied); its functions stay
/// callable for the life of the process.
#[no_mangle]
pub unsafe extern "C" fn ws_socket(
    evs: *const ws_events,
    port: u16,
    thread_loop: c_int,
    timeout_ms: u32,
) -> c_int {
    guard(-1, || {
        if evs.is_null() {
            return -1;
        }
        // SAFETY: non-NULL, and the caller promises a `struct ws_events`.
        let evs = unsafe { *evs };
        if thread_loop == 0 {
            return run_server(evs, port, timeout_ms, |_| {});
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(format!("ws_socket:{port}"))
            .spawn(move || {
                run_server(evs, port, timeout_ms, |ok| {
                    let _ = tx.send(ok);
                });
            });
        match spawned {
            Ok(t) => {
                lock(&THREADS).push(t);
                if rx.recv() == Ok(true) {
                    0
                } else {
                    -1
                }
            }
            Err(_) => -1,
        }
    })
}

/// `int ws_start(void)`: waits for the loops started with `thread_loop == 1` (they end only
/// on a fatal error) and returns 0; for bindings (like the Chibi stub's) whose main
/// thread has nothing else to do.
#[no_mangle]
pub extern "C" fn ws_start() -> c_int {
    guard(-1, || loop {
        let Some(t) = lock(&THREADS).pop() else {
            return 0;
        };
        let _ = t.join();
    })
}

/// wsServer: a NULL client is a broadcast to every open client.
#[cold]
fn broadcast(data: &[u8], wp: WriteProtocol) -> c_int {
    let data: Arc<[u8]> = data.into();
    let mut n = 0usize;
    for s in servers() {
        for h in s.open_clients() {
            if s.queue(h, Cmd::Frame(wp, data.clone())) {
                n += data.len();
            }
        }
    }
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// What a send returns on success: the message length.
fn sent(data: &[u8]) -> c_int {
    data.len().min(c_int::MAX as usize) as c_int
}

/// A send; the common case inline (from inside the client's own callback, nothing queued
/// for the server's clients: a direct write), the rest in [`send_other`].
#[inline(always)]
fn send(cli: *mut ws_cli_conn_t, data: &[u8], wp: WriteProtocol) -> c_int {
    let handle = cli as u64;
    // SAFETY: the references are used in this call only, which calls no C, and are dead
    // before `send_other` could ask again. (NULL is never lent: it goes on.)
    if let Some((wsi, proto)) = unsafe { lent_for_send(lent_of(handle), handle) } {
        if proto.pending.is_empty() {
            // No look-up in the shared table: a client closing (by ws_close_client or
            // the peer) refuses the write itself, with WriteError::Closed.
            return match wsi.write_fragment(data, wp, true) {
                Ok(()) => sent(data),
                // `wsi` and `proto` are not used again: the refusal asks anew.
                Err(e) => direct_failed(handle, data, wp, e),
            };
        }
    }
    send_other(cli, data, wp)
}

/// A broadcast, a send from outside the client's own callback, or one while frames wait
/// in the server's pending lists.
#[cold]
#[inline(never)]
fn send_other(cli: *mut ws_cli_conn_t, data: &[u8], wp: WriteProtocol) -> c_int {
    let handle = cli as u64;
    if handle == 0 {
        return broadcast(data, wp);
    }
    let Some(srv) = server_of(handle) else {
        return -1;
    };
    // SAFETY: the references are used in this call only, which calls no C.
    if let Some((wsi, _, proto)) = unsafe { lent(srv.lent, handle) } {
        // Behind frames already queued for this client, a send queues too (order).
        if !proto.pending.contains_key(&handle) {
            return match wsi.write_fragment(data, wp, true) {
                Ok(()) => sent(data),
                Err(e) => direct_failed(handle, data, wp, e),
            };
        }
    }
    if srv.queue(handle, Cmd::Frame(wp, data.into())) {
        sent(data)
    } else {
        -1
    }
}

/// A direct write refused: back-pressure queues it for WRITEABLE, anything else is -1.
/// Called by a send that holds no references from [`lent`] any more.
#[cold]
#[inline(never)]
fn direct_failed(handle: u64, data: &[u8], wp: WriteProtocol, e: WriteError) -> c_int {
    if e != WriteError::BackPressure {
        return -1;
    }
    // SAFETY: the references are used in this call only, which calls no C.
    let Some((wsi, proto)) = (unsafe { lent_for_send(lent_of(handle), handle) }) else {
        return -1;
    };
    proto
        .pending
        .entry(handle)
        .or_default()
        .push_back(Cmd::Frame(wp, data.into()));
    wsi.callback_on_writable();
    sent(data)
}

/// `int ws_sendframe(ws_cli_conn_t *cli, const char *msg, uint64_t size, int type)`: sends
/// `size` bytes as one message of `type` (`WS_FR_OP_TXT`, `WS_FR_OP_BIN`, `WS_FR_OP_PING`,
/// `WS_FR_OP_PONG`); `cli == NULL` sends it to every open client. Returns the bytes sent
/// (summed over clients for a broadcast), -1 for a closed client or a bad argument.
///
/// # Safety
/// `msg` points to `size` readable bytes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn ws_sendframe(
    cli: *mut ws_cli_conn_t,
    msg: *const c_char,
    size: u64,
    ty: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller promises `size` readable bytes at `msg`.
        let (Some(data), Some(wp)) = (unsafe { bytes(msg.cast(), size) }, wp_of(ty)) else {
            return -1;
        };
        send(cli, data, wp)
    })
}

/// `int ws_sendframe_txt(ws_cli_conn_t *cli, const char *msg)`: a text message of the
/// NUL-terminated `msg`.
///
/// # Safety
/// `msg` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ws_sendframe_txt(cli: *mut ws_cli_conn_t, msg: *const c_char) -> c_int {
    guard(-1, || {
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        match unsafe { cstr(msg) } {
            Some(m) => send(cli, m, WriteProtocol::Text),
            None => -1,
        }
    })
}

/// `int ws_sendframe_bin(ws_cli_conn_t *cli, const char *msg, uint64_t size)`: a binary
/// message.
///
/// # Safety
/// `msg` points to `size` readable bytes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn ws_sendframe_bin(cli: *mut ws_cli_conn_t, msg: *const c_char, size: u64) -> c_int {
    guard(-1, || {
        // SAFETY: the caller promises `size` readable bytes at `msg`.
        match unsafe { bytes(msg.cast(), size) } {
            Some(d) => send(cli, d, WriteProtocol::Binary),
            None => -1,
        }
    })
}

fn with_client<R>(cli: *mut ws_cli_conn_t, f: impl FnOnce(&Client) -> R) -> Option<R> {
    let handle = cli as u64;
    let srv = server_of(handle)?;
    let clients = lock(&srv.clients);
    clients.get(&handle).map(f)
}

/// `int ws_get_state(ws_cli_conn_t *cli)`: `WS_STATE_OPEN`, `WS_STATE_CLOSING`, or
/// `WS_STATE_CLOSED` (inside `onclose`); -1 for a handle of no client.
#[no_mangle]
pub extern "C" fn ws_get_state(cli: *mut ws_cli_conn_t) -> c_int {
    guard(-1, || with_client(cli, |c| c.state).unwrap_or(-1))
}

/// `char *ws_getaddress(ws_cli_conn_t *cli)`: the client's IP address as text, NULL for a
/// handle of no client. The string lives in a buffer of the calling thread, valid until
/// its next `ws_getaddress` call (nothing to free).
#[no_mangle]
pub extern "C" fn ws_getaddress(cli: *mut ws_cli_conn_t) -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let Some(addr) = with_client(cli, |c| c.addr) else {
            return std::ptr::null_mut();
        };
        let text = addr.to_string();
        ADDRESS.with(|b| {
            let mut b = b.borrow_mut();
            let n = text.len().min(b.len() - 1);
            b[..n].copy_from_slice(&text.as_bytes()[..n]);
            b[n] = 0;
            // The buffer is this thread's, alive as long as the thread: the pointer stays
            // valid after the borrow ends.
            b.as_mut_ptr().cast()
        })
    })
}

/// `int ws_get_fd(ws_cli_conn_t *cli)`: the client's socket descriptor, -1 for a handle of
/// no client. For reading only: closing it or doing I/O on it breaks the connection.
#[no_mangle]
pub extern "C" fn ws_get_fd(cli: *mut ws_cli_conn_t) -> c_int {
    guard(-1, || with_client(cli, |c| c.fd).unwrap_or(-1))
}

/// `int ws_get_connections(void)`: the number of open clients of all servers.
#[no_mangle]
pub extern "C" fn ws_get_connections() -> c_int {
    guard(-1, || {
        let n: usize = servers().map(|s| lock(&s.clients).len()).sum();
        c_int::try_from(n).unwrap_or(c_int::MAX)
    })
}

/// `int ws_close_client(ws_cli_conn_t *cli)`: starts the closing handshake (code 1000);
/// `onclose` follows when it ends. 0, or -1 for a handle of no open client.
#[no_mangle]
pub extern "C" fn ws_close_client(cli: *mut ws_cli_conn_t) -> c_int {
    guard(-1, || {
        let handle = cli as u64;
        let Some(srv) = server_of(handle) else {
            return -1;
        };
        let direct = with_current(srv, handle, |wsi, sess, _| {
            if lock(&srv.clients)
                .get(&handle)
                .is_none_or(|c| c.state != WS_STATE_OPEN)
            {
                return -1;
            }
            let _ = apply(wsi, sess, srv, &Cmd::Close);
            0
        });
        match direct {
            Some(r) => r,
            None if srv.queue(handle, Cmd::Close) => 0,
            None => -1,
        }
    })
}

/// `void ws_ping(ws_cli_conn_t *cli, int threshold)`: wsServer's liveness check. Sends a
/// ping to the client (every open client for `cli == NULL`); a client that left more
/// than `threshold` of these pings unanswered is closed instead (code 1008). Call it
/// periodically, e.g. every few seconds from a thread of your own.
#[no_mangle]
pub extern "C" fn ws_ping(cli: *mut ws_cli_conn_t, threshold: c_int) {
    guard((), || {
        let handle = cli as u64;
        if handle == 0 {
            for s in servers() {
                for h in s.open_clients() {
                    s.queue(h, Cmd::Ping(threshold));
                }
            }
            return;
        }
        let Some(srv) = server_of(handle) else {
            return;
        };
        if with_current(srv, handle, |wsi, sess, _| ping(wsi, sess, srv, threshold)).is_none() {
            srv.queue(handle, Cmd::Ping(threshold));
        }
    })
}

/// `int ws_set_max_queued(uint64_t bytes)` (not in wsServer): the bound on bytes sent from
/// outside a client's own callbacks and not yet written to it (default 64 MiB); a send
/// beyond it returns -1. Returns 0.
#[no_mangle]
pub extern "C" fn ws_set_max_queued(bytes: u64) -> c_int {
    MAX_QUEUED.store(bytes, Ordering::Relaxed);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_and_unknown_handles_get_errors() {
        let bogus = 0x0000_0007_0000_0005usize as *mut ws_cli_conn_t;
        assert_eq!(ws_get_state(bogus), -1);
        assert_eq!(ws_get_fd(bogus), -1);
        assert!(ws_getaddress(bogus).is_null());
        assert_eq!(ws_close_client(bogus), -1);
        // SAFETY: NULL message pointers are what is being checked.
        unsafe {
            assert_eq!(ws_sendframe_txt(bogus, c"hi".as_ptr()), -1);
            assert_eq!(ws_sendframe_txt(bogus, std::ptr::null()), -1);
            assert_eq!(ws_sendframe(bogus, std::ptr::null(), 3, WS_FR_OP_TXT), -1);
            assert_eq!(ws_sendframe(bogus, c"hi".as_ptr(), 2, WS_FR_OP_CONT), -1);
            assert_eq!(ws_socket(std::ptr::null(), 0, 1, 0), -1);
        }
        assert_eq!(wp_of(WS_FR_OP_BIN), Some(WriteProtocol::Binary));
        assert_eq!(wp_of(WS_FR_OP_CLSE), None);
    }
}
