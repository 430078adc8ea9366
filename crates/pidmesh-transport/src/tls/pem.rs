//! Loading a [`ClusterTls`] from PEM files or PEM bytes (what an operator's PKI hands out).
//!
//! Three inputs, each PEM:
//! - the **CA** file: one or more `CERTIFICATE` sections; every one is trusted (several during a
//!   CA rotation);
//! - the **chain** file: the node's certificate first, then any intermediates;
//! - the **key** file: the node's private key (`PRIVATE KEY` PKCS#8, `RSA PRIVATE KEY` PKCS#1
//!   or `EC PRIVATE KEY` SEC1).
//!
//! Every error names the input (its path, or `<ca bytes>` style labels for in-memory PEM) and
//! says what is wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ClusterTls, ClusterTlsBuilder, TlsConfigError};

/// Which of the three PEM inputs an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemPart {
    /// The CA certificate(s) every node trusts.
    Ca,
    /// The node certificate chain (end-entity first).
    Chain,
    /// The node private key.
    Key,
}

impl std::fmt::Display for PemPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemPart::Ca => "CA certificate",
            PemPart::Chain => "certificate chain",
            PemPart::Key => "private key",
        })
    }
}

/// Why loading a [`ClusterTls`] from PEM failed. Nothing was created.
#[derive(Debug, thiserror::Error)]
pub enum PemLoadError {
    /// The file could not be read (missing, unreadable...).
    #[error("cannot read the {part} file {}: {source}", path.display())]
    Read {
        /// Which input.
        part: PemPart,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not well-formed PEM (broken markers, bad base64...).
    #[error("the {part} {origin} is not valid PEM: {reason}")]
    Malformed {
        /// Which input.
        part: PemPart,
        /// The file path, or a label for in-memory PEM.
        origin: String,
        /// What the PEM parser reported.
        reason: String,
    },
    /// The input is PEM but holds no section of the expected kind (e.g. a key where a
    /// certificate was expected).
    #[error("the {part} {origin} holds no {expected} section")]
    Missing {
        /// Which input.
        part: PemPart,
        /// The file path, or a label for in-memory PEM.
        origin: String,
        /// The PEM section kind that was looked for.
        expected: &'static str,
    },
    /// The private key does not belong to the first certificate of the chain.
    #[error("the private key {key} does not match the certificate {chain}")]
    KeyMismatch {
        /// Where the key came from.
        key: String,
        /// Where the chain came from.
        chain: String,
    },
    /// The parsed certificates and key do not form a valid configuration (a CA that is not a
    /// certificate, a chain without a DNS name, a key type the provider does not support...).
    #[error("invalid TLS material (CA {ca}, chain {chain}, key {key}): {source}")]
    Config {
        /// Where the CA came from.
        ca: String,
        /// Where the chain came from.
        chain: String,
        /// Where the key came from.
        key: String,
        /// The underlying error.
        source: Box<TlsConfigError>,
    },
}

/// One PEM input: its text and a label naming it in errors.
struct Input<'a> {
    part: PemPart,
    origin: String,
    bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Input<'a> {
    fn file(part: PemPart, path: &Path) -> Result<Self, PemLoadError> {
        let bytes = std::fs::read(path).map_err(|source| PemLoadError::Read {
            part,
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            part,
            origin: path.display().to_string(),
            bytes: bytes.into(),
        })
    }

    fn bytes(part: PemPart, bytes: &'a [u8]) -> Self {
        let origin = match part {
            PemPart::Ca => "<ca bytes>",
            PemPart::Chain => "<chain bytes>",
            PemPart::Key => "<key bytes>",
        };
        Self {
            part,
            origin: origin.to_owned(),
            bytes: bytes.into(),
        }
    }

    fn malformed(&self, e: pem::Error) -> PemLoadError {
        PemLoadError::Malformed {
            part: self.part,
            origin: self.origin.clone(),
            reason: e.to_string(),
        }
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, PemLoadError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.malformed(e))?;
        if certs.is_empty() {
            return Err(PemLoadError::Missing {
                part: self.part,
                origin: self.origin.clone(),
                expected: "CERTIFICATE",
            });
        }
        Ok(certs)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, PemLoadError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => PemLoadError::Missing {
                part: self.part,
                origin: self.origin.clone(),
                expected: "PRIVATE KEY",
            },
            e => self.malformed(e),
        })
    }
}

fn builder(
    ca: &Input<'_>,
    chain: &Input<'_>,
    key: &Input<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<ClusterTlsBuilder, PemLoadError> {
    let cas = ca.certs()?;
    let chain_certs = chain.certs()?;
    let key_der = key.key()?;
    Ok(ClusterTlsBuilder {
        cas,
        chain: chain_certs,
        key: key_der,
        provider,
        alpn: vec![super::ALPN_PIDMESH_V1.to_vec()],
    })
}

fn build(
    b: ClusterTlsBuilder,
    ca: &Input<'_>,
    chain: &Input<'_>,
    key: &Input<'_>,
) -> Result<ClusterTls, PemLoadError> {
    b.build().map_err(|source| match source {
        TlsConfigError::Rustls(rustls::Error::InconsistentKeys(_)) => PemLoadError::KeyMismatch {
            key: key.origin.clone(),
            chain: chain.origin.clone(),
        },
        source => PemLoadError::Config {
            ca: ca.origin.clone(),
            chain: chain.origin.clone(),
            key: key.origin.clone(),
            source: Box::new(source),
        },
    })
}

impl ClusterTls {
    /// Reads the CA, chain and key PEM files and returns a builder (to add CAs or change ALPN
    /// before [`ClusterTlsBuilder::build`]). Every certificate of the CA file is trusted.
    ///
    /// # Errors
    /// [`PemLoadError::Read`] if a file cannot be read, [`PemLoadError::Malformed`] or
    /// [`PemLoadError::Missing`] if its content is not what it should be.
    pub fn builder_from_pem_files(
        ca: impl AsRef<Path>,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClusterTlsBuilder, PemLoadError> {
        let ca = Input::file(PemPart::Ca, ca.as_ref())?;
        let chain = Input::file(PemPart::Chain, chain.as_ref())?;
        let key = Input::file(PemPart::Key, key.as_ref())?;
        builder(&ca, &chain, &key, provider)
    }

    /// Builds the configuration from the CA, chain and key PEM files (default ALPN).
    ///
    /// # Errors
    /// See [`PemLoadError`]; each variant names the file concerned.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClusterTls, PemLoadError> {
        let ca = Input::file(PemPart::Ca, ca.as_ref())?;
        let chain = Input::file(PemPart::Chain, chain.as_ref())?;
        let key = Input::file(PemPart::Key, key.as_ref())?;
        let b = builder(&ca, &chain, &key, provider)?;
        build(b, &ca, &chain, &key)
    }

    /// Builds the configuration from in-memory PEM text (default ALPN). Errors name the inputs
    /// `<ca bytes>`, `<chain bytes>` and `<key bytes>`.
    ///
    /// # Errors
    /// See [`PemLoadError`] (never `Read`).
    pub fn from_pem(
        ca: &[u8],
        chain: &[u8],
        key: &[u8],
        provider: Arc<CryptoProvider>,
    ) -> Result<ClusterTls, PemLoadError> {
        let ca = Input::bytes(PemPart::Ca, ca);
        let chain = Input::bytes(PemPart::Chain, chain);
        let key = Input::bytes(PemPart::Key, key);
        let b = builder(&ca, &chain, &key, provider)?;
        build(b, &ca, &chain, &key)
    }
}
