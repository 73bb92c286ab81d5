//! HTTP/1.1 request heads, responses and static files (sans-IO).
pub mod request;
