//! The C ABI of wsreactor.
//!
//! The C APIs over the reactor, each with its own header in `include/`:
//!
//! - [`wsserver`]: the API of the small C server wsServer (`ws.h`: `ws_socket`,
//!   `ws_sendframe*`, `onopen`/`onclose`/`onmessage` with whole messages), so that a
//!   wsServer program compiles unchanged and links with this library instead;
//! - [`lws`]: a libwebsockets-1.x-style core (`libwebsockets.h`: a context from a
//!   creation-info struct with a protocols array, `libwebsocket_service` and
//!   `libwebsocket_service_fd`, `libwebsocket_write`, the `LWS_CALLBACK_*` reason numbers)
//!   for C programs ported from lws 1.x.
//!
//! Rules both follow at the boundary: no panic crosses it (every exported function runs
//! under `catch_unwind` and returns its error value instead), every pointer argument is
//! checked for NULL, and connections are named by generation-checked handles (a handle
//! of a closed connection gets an error, never another connection or freed memory).

pub mod lws;
pub mod wsserver;

/// Runs `f`, turning a panic into `err` so that it never unwinds into C.
pub(crate) fn guard<R>(err: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(err)
}

/// The bytes of a C string, or `None` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for
/// `'a`.
pub(crate) unsafe fn cstr<'a>(p: *const std::ffi::c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises a live NUL-terminated string.
    Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// `len` bytes at `p` as a slice (an empty slice for `len == 0`, whatever `p`); `None` for
/// a NULL `p` with a nonzero `len`, or a length beyond the address space.
///
/// # Safety
/// When `len > 0`, `p` points to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: u64) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    let len = usize::try_from(len).ok().filter(|&l| l <= isize::MAX as usize)?;
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}
