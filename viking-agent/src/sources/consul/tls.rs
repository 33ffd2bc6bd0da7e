//! The TLS settings of the Consul clients, built once: the roots a Consul certificate may
//! chain to (the Mozilla set, plus `consul.ca_cert`) and the client certificate Consul may
//! ask for (`consul.client_cert` and `consul.client_key`, for `verify_incoming`). Both the
//! HTTP/2 streams and the request client use this one configuration.

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::client::ConsulError;
use crate::config::ConsulSettings;

/// The ALPN name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The client configuration for `settings`, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn client_config(settings: &ConsulSettings) -> Result<ClientConfig, ConsulError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = &settings.ca_cert {
        let certs = certificates(ca, "consul.ca_cert")?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(setup("consul.ca_cert", ca, "no usable CA certificate"));
        }
    }
    // The provider is named, so the build never depends on which rustls crypto features
    // other crates in the graph turn on.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsulError::Setup(format!("consul TLS: {e}")))?
        .with_root_certificates(roots);
    let mut config = match &settings.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert, "consul.client_cert")?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| setup("consul.client_key", key, e))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| setup("consul.client_cert", cert, e))?
        }
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// Every certificate of the PEM file `path` (setting `field`); none is an error.
fn certificates(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, ConsulError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| setup(field, path, e))?;
    if certs.is_empty() {
        return Err(setup(field, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn setup(field: &str, path: &Path, error: impl std::fmt::Display) -> ConsulError {
    ConsulError::Setup(format!("{field} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ca: &Path) -> ConsulSettings {
        let mut settings = crate::config::ConsulSection::default().resolve(|_| None).unwrap();
        settings.ca_cert = Some(ca.to_owned());
        settings
    }

    #[test]
    fn a_ca_file_without_a_certificate_names_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = client_config(&settings(&path)).unwrap_err().to_string();
        assert!(error.contains("consul.ca_cert") && error.contains("ca.pem"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = client_config(&settings(&missing)).unwrap_err().to_string();
        assert!(error.contains("consul.ca_cert") && error.contains("missing.pem"), "{error}");
    }
}
