//! HTTPS with HTTP/2, as Consul's HTTPS API serves it: TLS with ALPN `h2`
//! and `http/1.1`, so a client that negotiates HTTP/2 multiplexes many
//! blocking queries over one TCP connection (hashicorp/consul PR #3657,
//! <https://github.com/hashicorp/consul/pull/3657>).
//!
//! The certificate is self-signed, generated at start, and valid for
//! `127.0.0.1`, `::1` and `localhost`; clients trust it as their root.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// The ALPN name of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why the TLS setup failed.
#[derive(Debug, Error)]
pub(crate) enum TlsError {
    /// The certificate could not be generated.
    #[error("generating the self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring rustls: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's certificate and the acceptor that serves it. Kept for the
/// server's lifetime, so a restart presents the same certificate.
#[derive(Clone)]
pub(crate) struct Tls {
    /// The certificate in PEM, for clients to trust.
    pub cert_pem: String,
    /// Accepts TLS connections with this certificate.
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The acceptor holds the private key; leave it out.
        f.debug_struct("Tls").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Tls {
    /// Generates a fresh certificate and key and builds the acceptor, which
    /// offers HTTP/2 and HTTP/1.1 by ALPN, or HTTP/1.1 only without `http2`.
    pub(crate) fn generate(http2: bool) -> Result<Self, TlsError> {
        let names = ["127.0.0.1", "::1", "localhost"].map(str::to_owned);
        let certified = rcgen::generate_simple_self_signed(names)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        // The provider is named explicitly so the build never depends on
        // which rustls crypto features other crates in the graph turn on.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)?;
        config.alpn_protocols =
            if http2 { vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()] } else { vec![ALPN_HTTP1.to_vec()] };
        Ok(Tls { cert_pem: certified.cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}
