//! Close codes (RFC 6455 §7.4) and close frame payloads.

/// Well-known close status codes.
///
/// Codes are plain `u16` on the wire; these constants name the ones RFC 6455 defines.
pub mod code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1005: reserved; means "no status code was present". Never sent.
    pub const NO_STATUS: u16 = 1005;
    /// 1006: reserved; means "closed without a close frame". Never sent.
    pub const ABNORMAL: u16 = 1006;
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// 1011: unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4.1, §7.4.2).
///
/// 1000–1003 and 1007–1011 are defined; 1004, 1005, 1006 and 1015 are reserved and must
/// not be sent; 1012–1014 are registered with IANA since the RFC; 3000–4999 are for
/// libraries, frameworks and applications. Everything else is invalid.
///
/// ```
/// use wsreactor::proto::close::is_valid_code;
/// assert!(is_valid_code(1000) && is_valid_code(4999));
/// assert!(!is_valid_code(1005) && !is_valid_code(999) && !is_valid_code(5000));
/// ```
#[inline]
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a received close payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// One byte of payload: a code needs two (1002).
    Truncated,
    /// A code that must not be sent (1002).
    InvalidCode(u16),
    /// The reason is not UTF-8 (1007).
    InvalidReason,
}

impl CloseError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> u16 {
        match self {
            CloseError::InvalidReason => code::INVALID_PAYLOAD,
            _ => code::PROTOCOL_ERROR,
        }
    }
}

/// Splits and validates a close frame payload into (code, reason).
///
/// An empty payload gives `(None, b"")`.
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<u16>, &[u8]), CloseError> {
    match payload.len() {
        0 => Ok((None, &[])),
        1 => Err(CloseError::Truncated),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            let reason = &payload[2..];
            std::str::from_utf8(reason).map_err(|_| CloseError::InvalidReason)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_payloads() {
        assert_eq!(parse_close_payload(b""), Ok((None, &b""[..])));
        assert_eq!(parse_close_payload(b"\x03"), Err(CloseError::Truncated));
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok((Some(1000), &b"bye"[..])));
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(CloseError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(CloseError::InvalidReason)
        );
        for c in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_code(c), "{c}");
        }
    }
}
