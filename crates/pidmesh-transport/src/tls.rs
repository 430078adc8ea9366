//! Cluster mutual TLS shared by the TCP and QUIC transports (cargo feature `tls`).
//!
//! Every node holds a certificate signed by the cluster CA whose first DNS subject alternative
//! name is its node name. [`ClusterTls`] builds one rustls [`ServerConfig`] and one
//! [`ClientConfig`] from the CA certificate, the node's chain and key, and an explicitly passed
//! [`CryptoProvider`] (the library never installs a process-wide provider):
//!
//! - TLS 1.3 only; ALPN [`ALPN_PIDMESH_V1`] (it carries the wire major version, so nodes of
//!   incompatible versions fail the handshake with a clear `no_application_protocol` alert);
//! - the server requires a client certificate chaining to the CA ([`WebPkiClientVerifier`]);
//! - the client verifies that the server certificate chains to the CA, but not which node it
//!   names: the protocol core only knows peer *addresses*, never the name it expects behind one,
//!   so there is nothing to compare a name against at dial time. The verifier instead checks the
//!   chain (and that the certificate is valid for its own first DNS name), and the transport
//!   reports that name as the peer's identity. Impersonation of a *specific* node is still
//!   prevented one layer up: every message carries the proven `peer_name`, and the core only
//!   accepts data originated by that name.
//!
//! [`peer_name_from_certs`] extracts the node name from a verified peer chain.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

#[cfg(feature = "dev-ca")]
pub mod dev_ca;
mod pem;

pub use pem::{PemLoadError, PemPart};

/// The wire major version carried in ALPN.
pub const WIRE_MAJOR: u8 = 1;

/// The ALPN protocol id of pidmesh wire major version 1.
pub const ALPN_PIDMESH_V1: &[u8] = b"pidmesh/1";

/// The `ring` crypto provider, for callers that do not pick one themselves.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why [`ClusterTlsBuilder::build`] failed. Nothing was created.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The CA certificate could not be added to the trust store.
    #[error("invalid CA certificate: {0}")]
    InvalidCa(rustls::Error),
    /// A certificate verifier could not be built (e.g. an empty trust store).
    #[error("cannot build certificate verifier: {0}")]
    Verifier(String),
    /// The node certificate chain is empty.
    #[error("the node certificate chain is empty")]
    EmptyChain,
    /// The node certificate has no DNS subject alternative name to serve as its node name.
    #[error("the node certificate has no DNS name")]
    NoNodeName,
    /// rustls rejected the configuration (protocol versions, key mismatch...).
    #[error("rustls configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS configurations of one cluster node.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    node_name: String,
    restart_secret: RestartSecret,
}

/// A secret derived from the node's private key (HKDF-SHA256): the same in every life of a
/// node that keeps its key, unknown to anyone without the key. Debug prints nothing of it.
#[derive(Clone)]
struct RestartSecret([u8; 32]);

impl std::fmt::Debug for RestartSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestartSecret(..)")
    }
}

impl RestartSecret {
    fn derive(key: &PrivateKeyDer<'_>) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"pidmesh restart secret");
        let mut out = [0u8; 32];
        // Both steps fail only for an output longer than 255 hashes; 32 bytes is one.
        let filled = salt
            .extract(key.secret_der())
            .expand(&[b"v1"], ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out));
        debug_assert!(filled.is_ok(), "HKDF-SHA256 yields 32 bytes");
        Self(out)
    }
}

/// Builder for [`ClusterTls`].
#[derive(Debug)]
pub struct ClusterTlsBuilder {
    cas: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
    alpn: Vec<Vec<u8>>,
}

impl ClusterTls {
    /// Starts a configuration trusting `ca`, presenting `chain` (end-entity first) signed with
    /// `key`, and using `provider` for all cryptography.
    pub fn builder(
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: Arc<CryptoProvider>,
    ) -> ClusterTlsBuilder {
        ClusterTlsBuilder {
            cas: vec![ca],
            chain,
            key,
            provider,
            alpn: vec![ALPN_PIDMESH_V1.to_vec()],
        }
    }

    /// The server side (accepting connections; requires client certificates).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The client side (dialing peers; presents this node's certificate).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// This node's name: the first DNS name of its certificate.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// 32 secret bytes derived from this node's private key (HKDF-SHA256 with a fixed label):
    /// the same in every life of a node restarted with the same key, and not computable
    /// without it. The QUIC transport keys its stateless resets with it, so a node that
    /// crashed and came back at the same address can tell its peers that their connections
    /// to its previous life are gone (they reconnect at once instead of after the idle
    /// timeout). Never send it anywhere.
    pub fn restart_secret(&self) -> &[u8; 32] {
        &self.restart_secret.0
    }

    /// The ALPN protocols offered and accepted.
    pub fn alpn_protocols(&self) -> &[Vec<u8>] {
        &self.server.alpn_protocols
    }
}

impl ClusterTlsBuilder {
    /// Also trusts `ca` (e.g. during a CA rotation).
    pub fn add_ca(mut self, ca: CertificateDer<'static>) -> Self {
        self.cas.push(ca);
        self
    }

    /// Replaces the ALPN protocols (default: `[ALPN_PIDMESH_V1]`), in preference order.
    pub fn alpn_protocols(mut self, alpn: Vec<Vec<u8>>) -> Self {
        self.alpn = alpn;
        self
    }

    /// Builds both configurations.
    ///
    /// # Errors
    /// See [`TlsConfigError`].
    pub fn build(self) -> Result<ClusterTls, TlsConfigError> {
        let end_entity = self.chain.first().ok_or(TlsConfigError::EmptyChain)?;
        let node_name = first_dns_san(end_entity).ok_or(TlsConfigError::NoNodeName)?;
        let mut roots = RootCertStore::empty();
        for ca in self.cas {
            roots.add(ca).map_err(TlsConfigError::InvalidCa)?;
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), self.provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
        let restart_secret = RestartSecret::derive(&self.key);
        let mut server = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        server.alpn_protocols = self.alpn.clone();
        let mut client = ClientConfig::builder_with_provider(self.provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier {
                inner: server_verifier,
            }))
            .with_client_auth_cert(self.chain, self.key)?;
        client.alpn_protocols = self.alpn;
        Ok(ClusterTls {
            server: Arc::new(server),
            client: Arc::new(client),
            node_name,
            restart_secret,
        })
    }
}

/// Verifies that a server certificate chains to the cluster CA and is valid for its own first
/// DNS name, whatever name was dialed (see the module docs for why).
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad_name =
            || rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let name = first_dns_san(end_entity).ok_or_else(bad_name)?;
        let name = ServerName::try_from(name).map_err(|_| bad_name())?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The node name proven by a verified peer chain: the first DNS name of its end-entity
/// certificate. `None` if the chain is empty or has no DNS name.
pub fn peer_name_from_certs(chain: &[CertificateDer<'_>]) -> Option<String> {
    first_dns_san(chain.first()?)
}

/// The first DNS subject alternative name of an X.509 certificate, or `None` if there is none
/// or the DER is malformed (never panics).
pub fn first_dns_san(cert: &CertificateDer<'_>) -> Option<String> {
    der::first_dns_san(cert.as_ref())
}

/// A minimal, bounds-checked DER walker: just enough X.509 to find the SAN extension.
mod der {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const EXTENSIONS: u8 = 0xA3; // [3] EXPLICIT, constructed
    const DNS_NAME: u8 = 0x82; // [2] IMPLICIT IA5String
    const SAN_OID: &[u8] = &[0x55, 0x1D, 0x11]; // 2.5.29.17

    /// Splits one TLV off `input`: (tag, content, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *input.first()?;
        if tag & 0x1F == 0x1F {
            return None; // multi-byte tags never occur in the structures we read
        }
        let first = *input.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for b in input.get(2..2 + n)? {
                len = (len << 8) | usize::from(*b);
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        Some((tag, input.get(header..end)?, input.get(end..)?))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, content, rest) = tlv(input)?;
        (t == tag).then_some((content, rest))
    }

    pub(super) fn first_dns_san(cert: &[u8]) -> Option<String> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (mut tbs, _) = expect(cert, SEQUENCE)?;
        let mut exts = None;
        while !tbs.is_empty() {
            let (tag, content, rest) = tlv(tbs)?;
            if tag == EXTENSIONS {
                exts = Some(expect(content, SEQUENCE)?.0);
            }
            tbs = rest;
        }
        let mut exts = exts?;
        while !exts.is_empty() {
            let (ext, rest) = expect(exts, SEQUENCE)?;
            exts = rest;
            let (oid, mut body) = expect(ext, OID)?;
            if oid != SAN_OID {
                continue;
            }
            if let Some((BOOLEAN, _, rest)) = tlv(body) {
                body = rest;
            }
            let (value, _) = expect(body, OCTET_STRING)?;
            let (mut names, _) = expect(value, SEQUENCE)?;
            while !names.is_empty() {
                let (tag, content, rest) = tlv(names)?;
                if tag == DNS_NAME {
                    return std::str::from_utf8(content).ok().map(str::to_owned);
                }
                names = rest;
            }
            return None;
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn garbage_never_panics() {
            let mut x: u64 = 42;
            for len in 0..300 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = first_dns_san(&bytes);
            }
            assert_eq!(first_dns_san(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
            assert_eq!(first_dns_san(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        }
    }
}
