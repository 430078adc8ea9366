//! A development certificate authority built on rcgen (cargo feature `dev-ca`).
//!
//! For tests, examples and local clusters only: keys live in memory and certificates never
//! expire. Production clusters issue node certificates with their own PKI; they only need a DNS
//! subject alternative name equal to the node name and both the server and client
//! authentication extended key usages.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{ClusterTls, TlsConfigError};

/// Why the development CA failed.
#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    /// rcgen could not create a key or certificate (e.g. the name is not a valid DNS name).
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The node name is not a valid DNS name (node names are carried as DNS SANs). Nothing was issued.
    #[error("node name {0:?} is not a valid DNS name")]
    InvalidName(String),
    /// The issued certificate could not be turned into a TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// A node certificate issued by a [`DevCa`].
#[derive(Debug)]
pub struct NodeCert {
    /// The node name (the certificate's DNS name).
    pub name: String,
    /// The chain to present, end-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

impl Clone for NodeCert {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A self-signed CA that issues node certificates.
pub struct DevCa {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// Creates a CA whose subject common name is `common_name`.
    ///
    /// # Errors
    /// [`DevCaError::Rcgen`] if key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Self, DevCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate every node trusts.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// Issues a certificate for `node_name` (DNS SAN `node_name`, IP SAN 127.0.0.1, server and
    /// client authentication).
    ///
    /// # Errors
    /// [`DevCaError::InvalidName`] if `node_name` is not a valid DNS name (an IP address is
    /// not accepted either); [`DevCaError::Rcgen`] if signing fails.
    pub fn issue(&self, node_name: &str) -> Result<NodeCert, DevCaError> {
        if node_name.parse::<std::net::IpAddr>().is_ok()
            || rustls::pki_types::DnsName::try_from(node_name).is_err()
        {
            return Err(DevCaError::InvalidName(node_name.to_owned()));
        }
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec![node_name.to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, node_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            name: node_name.to_owned(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// Issues a certificate for `node_name` and builds its [`ClusterTls`] with the default ALPN.
    ///
    /// # Errors
    /// See [`DevCaError`].
    pub fn cluster_tls(
        &self,
        node_name: &str,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClusterTls, DevCaError> {
        let node = self.issue(node_name)?;
        Ok(ClusterTls::builder(self.cert(), node.chain, node.key, provider).build()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tls::{first_dns_san, ring_provider};

    #[test]
    fn issued_certificate_names_the_node() {
        let ca = DevCa::new("test ca").unwrap();
        let node = ca.issue("node-a").unwrap();
        assert_eq!(first_dns_san(&node.chain[0]).as_deref(), Some("node-a"));
        assert_eq!(first_dns_san(&ca.cert()), None);
        let tls = ca.cluster_tls("node-b", ring_provider()).unwrap();
        assert_eq!(tls.node_name(), "node-b");
        assert_eq!(tls.alpn_protocols(), &[b"pidmesh/1".to_vec()]);
    }

    #[test]
    fn invalid_node_name_is_an_error() {
        let ca = DevCa::new("test ca").unwrap();
        for bad in ["not a dns name", "", "10.0.0.1", "nöde"] {
            assert!(
                matches!(ca.issue(bad), Err(DevCaError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
    }

    /// The restart secret depends on the private key alone: the same key gives the same
    /// secret in every configuration built from it, another key another secret.
    #[test]
    fn restart_secret_follows_the_private_key() {
        let ca = DevCa::new("test ca").unwrap();
        let node = ca.issue("node-a").unwrap();
        let build = |n: &NodeCert| {
            ClusterTls::builder(
                ca.cert(),
                n.chain.clone(),
                n.key.clone_key(),
                ring_provider(),
            )
            .build()
            .unwrap()
        };
        let (one, two) = (build(&node), build(&node));
        assert_eq!(one.restart_secret(), two.restart_secret());
        let other = build(&ca.issue("node-a").unwrap());
        assert_ne!(one.restart_secret(), other.restart_secret());
        assert_ne!(one.restart_secret(), &[0u8; 32]);
        assert!(!format!("{one:?}").contains(&format!("{:?}", one.restart_secret())));
    }
}
