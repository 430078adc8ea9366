//! `pidmesh cert ca` and `pidmesh cert node`: a cluster CA and node certificates as PEM files.
//!
//! Files: `ca.pem` + `ca.key` (the CA), `NAME.pem` + `NAME.key` (a node). Keys are written with
//! mode 0600 (created that way, never world-readable even briefly). Existing files are never
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why a certificate command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists already (never overwritten).
    #[error("{} exists already; remove it or choose another --out directory", .0.display())]
    Exists(PathBuf),
    /// The node name cannot be a DNS name (node names are carried as DNS SANs).
    #[error("node name {0:?} is not a valid DNS name")]
    InvalidName(String),
    /// The CA files could not be parsed.
    #[error("CA in {}: {reason}", dir.display())]
    BadCa { dir: PathBuf, reason: String },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to a new file `path` with `mode` (unix), refusing to overwrite.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_path_buf())
        } else {
            CertError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn check_absent(paths: &[&Path]) -> Result<(), CertError> {
    for p in paths {
        if p.exists() {
            return Err(CertError::Exists(p.to_path_buf()));
        }
    }
    Ok(())
}

/// Creates a cluster CA in `out`: `ca.pem` (0644) and `ca.key` (0600). Returns the paths.
pub(crate) fn make_ca(out: &Path, days: u32) -> Result<Vec<PathBuf>, CertError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (cert_p, key_p) = (out.join("ca.pem"), out.join("ca.key"));
    check_absent(&[&cert_p, &key_p])?;
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    set_validity(&mut params, days);
    let cert = params.self_signed(&key)?;
    write_new(&key_p, &key.serialize_pem(), 0o600)?;
    write_new(&cert_p, &cert.pem(), 0o644)?;
    Ok(vec![cert_p, key_p])
}

/// Issues a node certificate for `name` signed by the CA in `ca_dir`, into `out`: `NAME.pem`
/// (0644) and `NAME.key` (0600). `extra_sans` are added as IP or DNS names.
pub(crate) fn make_node(
    name: &str,
    ca_dir: &Path,
    out: &Path,
    extra_sans: &[String],
    days: u32,
) -> Result<Vec<PathBuf>, CertError> {
    if name.parse::<std::net::IpAddr>().is_ok()
        || rustls::pki_types::DnsName::try_from(name).is_err()
    {
        return Err(CertError::InvalidName(name.to_owned()));
    }
    let ca_cert_p = ca_dir.join("ca.pem");
    let ca_key_p = ca_dir.join("ca.key");
    // The issuer is the CA's subject and key: the subject is fixed (`ca_params`), so only the
    // key is read back; the certificate must exist beside it.
    std::fs::metadata(&ca_cert_p).map_err(io(&ca_cert_p))?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_p).map_err(io(&ca_key_p))?;
    let bad = |reason: String| CertError::BadCa {
        dir: ca_dir.to_path_buf(),
        reason,
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| bad(format!("ca.key: {e}")))?;
    let issuer = Issuer::new(ca_params(), ca_key);
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (cert_p, key_p) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    check_absent(&[&cert_p, &key_p])?;
    let mut sans = vec![name.to_owned()];
    sans.extend(extra_sans.iter().cloned());
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_new(&key_p, &key.serialize_pem(), 0o600)?;
    write_new(&cert_p, &cert.pem(), 0o644)?;
    Ok(vec![cert_p, key_p])
}

/// The CA's fixed subject and usages (node certificates name it as their issuer).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "pidmesh cluster CA");
    params
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    // An hour of slack for clocks that are a little behind.
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pidmesh_transport::tls::{ClusterTls, ring_provider};

    #[test]
    fn ca_and_node_files_load_and_keys_are_private() {
        let dir = std::env::temp_dir().join(format!("pidmesh-cli-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        make_ca(&dir.join("ca"), 30).unwrap();
        make_node(
            "node-1",
            &dir.join("ca"),
            &dir.join("n"),
            &["127.0.0.1".into()],
            30,
        )
        .unwrap();
        make_node("node-2", &dir.join("ca"), &dir.join("n"), &[], 30).unwrap();
        let load = |n: &str| {
            ClusterTls::from_pem_files(
                dir.join("ca/ca.pem"),
                dir.join(format!("n/{n}.pem")),
                dir.join(format!("n/{n}.key")),
                ring_provider(),
            )
            .unwrap()
        };
        let (a, b) = (load("node-1"), load("node-2"));
        assert_eq!(a.node_name(), "node-1");
        // A real mutual-TLS handshake between the two, in memory: the chain verifies both ways.
        let mut client = rustls::ClientConnection::new(
            a.client_config(),
            rustls::pki_types::ServerName::try_from("node-2").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(b.server_config()).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        let peer = server.peer_certificates().unwrap();
        assert_eq!(
            pidmesh_transport::tls::peer_name_from_certs(peer).as_deref(),
            Some("node-1")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for k in ["ca/ca.key", "n/node-1.key"] {
                let mode = std::fs::metadata(dir.join(k)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{k}");
            }
        }
        // Never overwritten.
        assert!(matches!(
            make_ca(&dir.join("ca"), 30),
            Err(CertError::Exists(_))
        ));
        assert!(matches!(
            make_node("node-1", &dir.join("ca"), &dir.join("n"), &[], 30),
            Err(CertError::Exists(_))
        ));
        assert!(matches!(
            make_node("bad name", &dir.join("ca"), &dir.join("n"), &[], 30),
            Err(CertError::InvalidName(_))
        ));
        assert!(matches!(
            make_node("node-2", &dir.join("nope"), &dir.join("n"), &[], 30),
            Err(CertError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
