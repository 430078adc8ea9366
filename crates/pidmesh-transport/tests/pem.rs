//! `ClusterTls` from PEM files and bytes: round trip with rcgen-made PEMs, and the errors for a
//! missing file, wrong content and a key that does not match its certificate.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use pidmesh_transport::tls::{ClusterTls, PemLoadError, PemPart, ring_provider};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

struct Pems {
    ca: String,
    chain: String,
    key: String,
}

/// A CA and a node certificate for `name`, as PEM text.
fn make(name: &str) -> Pems {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name.push(DnType::CommonName, "test ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut node = CertificateParams::new(vec![name.to_owned()]).unwrap();
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = node.signed_by(&key, &issuer).unwrap();
    Pems {
        ca: ca_cert.pem(),
        chain: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pidmesh-pem-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_from_bytes_and_files() {
    let p = make("node-a");
    let tls = ClusterTls::from_pem(
        p.ca.as_bytes(),
        p.chain.as_bytes(),
        p.key.as_bytes(),
        ring_provider(),
    )
    .unwrap();
    assert_eq!(tls.node_name(), "node-a");

    let dir = tempdir("roundtrip");
    std::fs::write(dir.join("ca.pem"), &p.ca).unwrap();
    std::fs::write(dir.join("node.pem"), &p.chain).unwrap();
    std::fs::write(dir.join("node.key"), &p.key).unwrap();
    let tls = ClusterTls::from_pem_files(
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
        ring_provider(),
    )
    .unwrap();
    assert_eq!(tls.node_name(), "node-a");
    // Two CAs in one file (a rotation) are both accepted.
    let other = make("node-b");
    std::fs::write(dir.join("cas.pem"), format!("{}{}", p.ca, other.ca)).unwrap();
    let tls = ClusterTls::builder_from_pem_files(
        dir.join("cas.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
        ring_provider(),
    )
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(tls.node_name(), "node-a");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempdir("missing");
    let p = make("node-a");
    std::fs::write(dir.join("ca.pem"), &p.ca).unwrap();
    std::fs::write(dir.join("node.pem"), &p.chain).unwrap();
    let err = ClusterTls::from_pem_files(
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("nope.key"),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PemLoadError::Read { part: PemPart::Key, path, .. } if path.ends_with("nope.key")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("nope.key") && msg.contains("private key"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_content_is_named() {
    let p = make("node-a");
    // A key where the CA certificate should be.
    let err = ClusterTls::from_pem(
        p.key.as_bytes(),
        p.chain.as_bytes(),
        p.key.as_bytes(),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Missing {
                part: PemPart::Ca,
                expected: "CERTIFICATE",
                ..
            }
        ),
        "{err:?}"
    );
    // A certificate where the key should be.
    let err = ClusterTls::from_pem(
        p.ca.as_bytes(),
        p.chain.as_bytes(),
        p.chain.as_bytes(),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Missing {
                part: PemPart::Key,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("<key bytes>"), "{err}");
    // Broken PEM: a section that never ends, and bad base64.
    let truncated = &p.chain[..p.chain.len() / 2];
    let err = ClusterTls::from_pem(
        p.ca.as_bytes(),
        truncated.as_bytes(),
        p.key.as_bytes(),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Malformed {
                part: PemPart::Chain,
                ..
            }
        ),
        "{err:?}"
    );
    let garbage = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = ClusterTls::from_pem(
        garbage.as_bytes(),
        p.chain.as_bytes(),
        p.key.as_bytes(),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Malformed {
                part: PemPart::Ca,
                ..
            }
        ),
        "{err:?}"
    );
    // Valid base64 that is not a certificate.
    let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = ClusterTls::from_pem(
        p.ca.as_bytes(),
        not_der.as_bytes(),
        p.key.as_bytes(),
        ring_provider(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Config { .. } | PemLoadError::KeyMismatch { .. }
        ),
        "{err:?}"
    );
    // Nothing at all.
    let err = ClusterTls::from_pem(b"", p.chain.as_bytes(), p.key.as_bytes(), ring_provider())
        .unwrap_err();
    assert!(
        matches!(
            err,
            PemLoadError::Missing {
                part: PemPart::Ca,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn key_of_another_certificate_is_a_mismatch() {
    let a = make("node-a");
    let b = make("node-b");
    let dir = tempdir("mismatch");
    std::fs::write(dir.join("ca.pem"), &a.ca).unwrap();
    std::fs::write(dir.join("a.pem"), &a.chain).unwrap();
    std::fs::write(dir.join("b.key"), &b.key).unwrap();
    let err = ClusterTls::from_pem_files(
        dir.join("ca.pem"),
        dir.join("a.pem"),
        dir.join("b.key"),
        ring_provider(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PemLoadError::KeyMismatch { .. }), "{err:?}");
    assert!(msg.contains("b.key") && msg.contains("a.pem"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}
