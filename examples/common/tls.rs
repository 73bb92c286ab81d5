//! `--ssl`, `--cert`, `--key`, `--ca` for the example servers.
//!
//! `--ssl` without files makes a self-signed certificate for `localhost`, `127.0.0.1` and
//! `::1` at start-up (rcgen) and logs a warning with its SHA-256 fingerprint, so a browser
//! or client can be told to trust exactly that one.

use sha2::{Digest, Sha256};
use wsreactor::ContextBuilder;

/// The TLS arguments seen on the command line.
#[derive(Default)]
pub struct TlsArgs {
    pub ssl: bool,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca: Option<String>,
}

/// The usage text of the TLS arguments.
pub const USAGE: &str = "[--ssl [--cert FILE.pem --key FILE.pem] [--ca CA.pem]]";

impl TlsArgs {
    /// Takes `arg` (and its value from `args`) if it is a TLS argument.
    pub fn take(&mut self, arg: &str, args: &mut impl Iterator<Item = String>) -> bool {
        match arg {
            "--ssl" | "-s" => self.ssl = true,
            "--cert" => self.cert = Some(args.next().expect("--cert FILE")),
            "--key" => self.key = Some(args.next().expect("--key FILE")),
            "--ca" => self.ca = Some(args.next().expect("--ca FILE")),
            _ => return false,
        }
        true
    }

    /// Whether the server speaks TLS (`--cert` implies `--ssl`).
    pub fn enabled(&self) -> bool {
        self.ssl || self.cert.is_some()
    }

    /// Applies the arguments to the builder.
    pub fn apply(&self, mut b: ContextBuilder) -> ContextBuilder {
        if !self.enabled() {
            return b;
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => b = b.ssl_cert_filepath(c).ssl_private_key_filepath(k),
            (Some(_), None) | (None, Some(_)) => {
                eprintln!("--cert and --key go together");
                std::process::exit(2);
            }
            (None, None) => {
                let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
                let ck = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
                let fp: String = Sha256::digest(ck.cert.der().as_ref())
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":");
                log::warn!("TLS with a self-signed certificate made at start-up; SHA-256 fingerprint {fp}");
                b = b.ssl_cert_pem(ck.cert.pem(), ck.signing_key.serialize_pem());
            }
        }
        if let Some(ca) = &self.ca {
            b = b
                .ssl_ca_filepath(ca)
                .ssl_client_certs(wsreactor::ClientCerts::Optional);
        }
        b
    }

    /// `https` or `http`, for the start-up line.
    pub fn scheme(&self) -> &'static str {
        if self.enabled() {
            "https"
        } else {
            "http"
        }
    }
}
