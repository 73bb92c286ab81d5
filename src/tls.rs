//! TLS settings and the rustls server configuration built from them (libwebsockets'
//! `ssl_*` context-creation fields, mapped to rustls).
//!
//! The crypto provider is rustls' `ring` build: it compiles from a fresh checkout with only
//! a C compiler (aws-lc-rs needs cmake and several times the build time), and the TLS
//! benchmarks in BENCHMARKS.md are measured with it.
//!
//! Nothing here reads or writes a socket: the session lives in the
//! [transport](crate::transport), beneath the HTTP and WebSocket roles.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Whether TLS clients must present a certificate (libwebsockets'
/// `LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is accepted, one with a certificate
    /// that does not verify against [`ssl_ca_filepath`](crate::ContextBuilder::ssl_ca_filepath)
    /// is refused.
    Optional,
    /// A certificate that verifies against the CA file is required.
    Required,
}

/// What a TLS listener does with a client that speaks plain HTTP to it, decided by the
/// first byte (a TLS connection starts with a handshake record, `0x16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlainHttp {
    /// Answer `400 Bad Request` with a page saying the port speaks TLS, and close (as nginx
    /// does). The default.
    #[default]
    Refuse,
    /// Serve it as plain HTTP and WebSocket (libwebsockets'
    /// `LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT`).
    Serve,
    /// Redirect to the same URL with `https://` (libwebsockets'
    /// `LWS_SERVER_OPTION_REDIRECT_HTTP_TO_HTTPS`).
    Redirect,
}

/// Where a certificate chain and key come from.
#[derive(Clone)]
pub(crate) enum Pem {
    Files(PathBuf, PathBuf),
    Memory(Vec<u8>, Vec<u8>),
}

/// Names the files, never prints a key.
impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::Files(cert, key) => write!(f, "Pem::Files({cert:?}, {key:?})"),
            Pem::Memory(..) => f.write_str("Pem::Memory(..)"),
        }
    }
}

/// The TLS part of the builder.
#[derive(Default)]
pub(crate) struct TlsOptions {
    pub(crate) cert: Option<Pem>,
    pub(crate) sni: Vec<(String, Pem)>,
    pub(crate) cipher_list: Option<String>,
    pub(crate) client_certs: ClientCerts,
    pub(crate) server_config: Option<Arc<ServerConfig>>,
}

/// What the reactor keeps of TLS: the rustls configuration of the context's certificates.
pub(crate) struct TlsContext {
    pub(crate) config: Arc<ServerConfig>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl TlsOptions {
    /// True when TLS was asked for at all.
    pub(crate) fn enabled(&self) -> bool {
        self.cert.is_some() || self.server_config.is_some() || !self.sni.is_empty()
    }

    /// Builds the rustls configuration: errors name the file or setting at fault.
    pub(crate) fn build(&self, ca: Option<&std::path::Path>) -> io::Result<TlsContext> {
        if let Some(config) = &self.server_config {
            return Ok(TlsContext {
                config: config.clone(),
            });
        }
        let config = self.server_config_for(self.cert.as_ref(), &self.sni, ca)?;
        Ok(TlsContext { config })
    }

    /// The configuration of a listener with a certificate of its own: the context's
    /// cipher and client-certificate settings, that certificate for every name.
    pub(crate) fn build_for_listener(
        &self,
        cert: &Pem,
        ca: Option<&std::path::Path>,
    ) -> io::Result<Arc<ServerConfig>> {
        self.server_config_for(Some(cert), &[], ca)
    }

    fn server_config_for(
        &self,
        cert: Option<&Pem>,
        sni: &[(String, Pem)],
        ca: Option<&std::path::Path>,
    ) -> io::Result<Arc<ServerConfig>> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(list) = &self.cipher_list {
            provider.cipher_suites = cipher_suites(&provider, list)?;
        }
        let provider = Arc::new(provider);
        let default = match cert {
            Some(pem) => Some(certified_key(pem, &provider)?),
            None => None,
        };
        let mut by_name = HashMap::new();
        for (name, pem) in sni {
            by_name.insert(name.to_ascii_lowercase(), certified_key(pem, &provider)?);
        }
        let Some(default) = default.or_else(|| {
            sni.first()
                .and_then(|(n, _)| by_name.get(&n.to_ascii_lowercase()).cloned())
        }) else {
            return Err(invalid("TLS: no certificate given".into()));
        };
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| invalid(format!("TLS: {e}")))?;
        let builder = match self.client_certs {
            ClientCerts::None => builder.with_no_client_auth(),
            mode => {
                let Some(ca) = ca else {
                    return Err(invalid("TLS: client certificates need ssl_ca_filepath".into()));
                };
                let mut roots = RootCertStore::empty();
                for cert in read_certs_file(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("TLS: CA {}: {e}", ca.display())))?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let v = if mode == ClientCerts::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let v = v
                    .build()
                    .map_err(|e| invalid(format!("TLS: client verifier: {e}")))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniResolver { by_name, default }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| invalid(format!("TLS: ticketer: {e}")))?;
        Ok(Arc::new(config))
    }
}

/// The provider's suites named in `list` (IANA names such as `TLS_AES_128_GCM_SHA256` or
/// `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`, or rustls' `TLS13_…` spelling; separated
/// by `:`, `,` or spaces), in the list's order.
fn cipher_suites(provider: &CryptoProvider, list: &str) -> io::Result<Vec<SupportedCipherSuite>> {
    let mut out = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|s| !s.is_empty()) {
        let found = provider.cipher_suites.iter().find(|s| {
            let ours = format!("{:?}", s.suite());
            let iana = ours.strip_prefix("TLS13_").map(|r| format!("TLS_{r}"));
            ours.eq_ignore_ascii_case(name) || iana.is_some_and(|i| i.eq_ignore_ascii_case(name))
        });
        match found {
            Some(s) if !out.contains(s) => out.push(*s),
            Some(_) => {}
            None => {
                let known: Vec<String> = provider
                    .cipher_suites
                    .iter()
                    .map(|s| {
                        let n = format!("{:?}", s.suite());
                        n.strip_prefix("TLS13_").map_or(n.clone(), |r| format!("TLS_{r}"))
                    })
                    .collect();
                return Err(invalid(format!(
                    "TLS: unknown cipher suite {name:?} in ssl_cipher_list (known: {})",
                    known.join(":")
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(invalid("TLS: ssl_cipher_list names no cipher suite".into()));
    }
    Ok(out)
}

fn read_certs_file(path: &std::path::Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("TLS: {}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| invalid(format!("TLS: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("TLS: {}: no certificate in it", path.display())));
    }
    Ok(certs)
}

fn certified_key(pem: &Pem, provider: &CryptoProvider) -> io::Result<Arc<CertifiedKey>> {
    let (chain, key, what) = match pem {
        Pem::Files(cert, key) => {
            let chain = read_certs_file(cert)?;
            let k = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid(format!("TLS: {}: {e}", key.display())))?;
            (chain, k, cert.display().to_string())
        }
        Pem::Memory(cert, key) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(cert).collect();
            let chain = chain.map_err(|e| invalid(format!("TLS: certificate PEM: {e}")))?;
            if chain.is_empty() {
                return Err(invalid("TLS: certificate PEM holds no certificate".into()));
            }
            let k = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(format!("TLS: key PEM: {e}")))?;
            (chain, k, "certificate PEM".to_owned())
        }
    };
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| invalid(format!("TLS: {what}: {e}")))
}

/// Picks the certificate by SNI name (libwebsockets' vhosts sharing a port), or the default
/// one for clients that send no name or an unknown one.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello.server_name().and_then(|n| {
            let n = n.to_ascii_lowercase();
            // An exact name first, then a wildcard entry (`*.example.com`) for its parent.
            self.by_name.get(&n).or_else(|| {
                let parent = n.split_once('.')?.1;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        Some(named.unwrap_or(&self.default).clone())
    }
}

/// The rustls client configuration for an [`SslMode`](crate::SslMode): the web PKI roots
/// (or the CA file, when the context has one) for `Verified`, any certificate for
/// `AllowSelfSigned` (signatures in the handshake are still checked, so the session is
/// bound to the certificate shown; only who issued it is not).
pub(crate) fn client_config(
    self_signed: bool,
    ca: Option<&std::path::Path>,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    let mut config = if self_signed {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(ca) => {
                for cert in read_certs_file(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("TLS: CA {}: {e}", ca.display())))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate, checking only the handshake signatures made with it
/// (libwebsockets' "allow self-signed" client mode).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
