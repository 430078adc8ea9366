//! `pidmesh run` configuration: a TOML file, overridden by `PIDMESH_*` environment variables,
//! overridden by flags. Everything is validated (certificates loaded included) before anything
//! starts; the first problem is reported naming the field and where its value came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use pidmesh::{Config, Resolver};
use pidmesh_transport::tls::{ClusterTls, PemLoadError, PemPart, ring_provider};
use pidmesh_transport_tcp::ClusterKey;
use serde::Deserialize;

/// Default admin address (loopback: no token needed).
pub(crate) const DEFAULT_ADMIN: &str = "127.0.0.1:7947";

/// One config field as it may appear in the file, the environment and the flags.
/// The flag is `--<field with - for _>`, the variable `PIDMESH_<FIELD upper>`.
#[derive(Debug, Default, Clone, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fields {
    /// Node name (unique in the cluster; the DNS name of its certificate with TLS).
    #[arg(long, env = "PIDMESH_NAME")]
    pub(crate) name: Option<String>,
    /// Address to listen on for cluster traffic, e.g. 10.0.0.1:7946.
    #[arg(long, env = "PIDMESH_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Addresses of nodes to join through (comma-separated in the environment).
    #[arg(long, env = "PIDMESH_SEEDS", value_delimiter = ',')]
    pub(crate) seeds: Option<Vec<SocketAddr>>,
    /// Cluster transport: quic (default), tcp+tls, or tcp (plain, no authentication).
    #[arg(long, env = "PIDMESH_TRANSPORT")]
    pub(crate) transport: Option<String>,
    /// Timer preset: local, lan (default) or wan.
    #[arg(long, env = "PIDMESH_PRESET")]
    pub(crate) preset: Option<String>,
    /// Expected cluster size (rescales SWIM dissemination and suspicion).
    #[arg(long, env = "PIDMESH_CLUSTER_SIZE")]
    pub(crate) cluster_size: Option<u32>,
    /// Override: SWIM probe period, milliseconds.
    #[arg(long, env = "PIDMESH_PROBE_PERIOD_MS")]
    pub(crate) probe_period_ms: Option<u64>,
    /// Override: SWIM probe round-trip timeout, milliseconds.
    #[arg(long, env = "PIDMESH_PROBE_RTT_MS")]
    pub(crate) probe_rtt_ms: Option<u64>,
    /// Override: how long a suspected node has before it is declared down, milliseconds.
    #[arg(long, env = "PIDMESH_SUSPECT_TO_DOWN_MS")]
    pub(crate) suspect_to_down_ms: Option<u64>,
    /// Override: anti-entropy interval, milliseconds.
    #[arg(long, env = "PIDMESH_SYNC_INTERVAL_MS")]
    pub(crate) sync_interval_ms: Option<u64>,
    /// Override: delta batching window, milliseconds.
    #[arg(long, env = "PIDMESH_DELTA_BATCH_WINDOW_MS")]
    pub(crate) delta_batch_window_ms: Option<u64>,
    /// Conflict resolver: keep-oldest (default), keep-newest, kill-both, node-priority:a,b,c.
    #[arg(long, env = "PIDMESH_RESOLVER")]
    pub(crate) resolver: Option<String>,
    /// CA certificate(s) PEM file (every node trusts these).
    #[arg(long, env = "PIDMESH_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// This node's certificate chain PEM file (its certificate first).
    #[arg(long, env = "PIDMESH_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This node's private key PEM file.
    #[arg(long, env = "PIDMESH_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// File holding the cluster key: 32 bytes as 64 hex digits (required with transport tcp,
    /// whose every frame it authenticates; e.g. `openssl rand -hex 32 > cluster.key`).
    #[arg(long, env = "PIDMESH_CLUSTER_KEY_FILE")]
    pub(crate) cluster_key_file: Option<PathBuf>,
    /// Admin and sidecar HTTP API address (default 127.0.0.1:7947).
    #[arg(long, env = "PIDMESH_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// Bearer token for the HTTP API (required when it listens beyond loopback).
    #[arg(long, env = "PIDMESH_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// File holding the bearer token (first line).
    #[arg(long, env = "PIDMESH_ADMIN_TOKEN_FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// `/readyz` answers 200 once this node sees at least this many members, itself included (default 1).
    #[arg(long, env = "PIDMESH_MIN_MEMBERS")]
    pub(crate) min_members: Option<usize>,
    /// Longest lease a sidecar client may ask for, milliseconds (default 3600000).
    #[arg(long, env = "PIDMESH_MAX_LEASE_MS")]
    pub(crate) max_lease_ms: Option<u64>,
    /// Singletons this node is a candidate for (comma-separated in the environment); see `/v1/singletons`.
    #[arg(long, env = "PIDMESH_SINGLETONS", value_delimiter = ',')]
    pub(crate) singletons: Option<Vec<String>>,
    /// Singleton policy: majority (default), quorum:N or available.
    #[arg(long, env = "PIDMESH_SINGLETON_POLICY")]
    pub(crate) singleton_policy: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,pidmesh=debug`; default `info`).
    #[arg(long, env = "PIDMESH_LOG")]
    pub(crate) log: Option<String>,
}

/// The cluster transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportKind {
    Quic,
    Tcp,
    TcpTls,
}

/// A validated configuration, ready to start.
#[derive(Debug)]
pub(crate) struct NodeConfig {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) transport: TransportKind,
    pub(crate) tls: Option<ClusterTls>,
    /// The shared key of a plain-TCP cluster (transport tcp only).
    pub(crate) cluster_key: Option<ClusterKey>,
    pub(crate) config: Config,
    pub(crate) resolver: Resolver,
    pub(crate) resolver_name: String,
    pub(crate) preset: String,
    pub(crate) admin_listen: SocketAddr,
    pub(crate) admin_token: Option<String>,
    pub(crate) min_members: usize,
    pub(crate) max_lease: Duration,
    pub(crate) log: String,
    pub(crate) singletons: Vec<String>,
    pub(crate) singleton_policy: pidmesh::SingletonPolicy,
    pub(crate) singleton_policy_name: String,
}

/// A configuration problem: which field, where its value came from, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown field or a value of the wrong type.
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A field's value is invalid.
    #[error("config field `{field}` ({origin}): {reason}")]
    Field {
        field: &'static str,
        origin: String,
        reason: String,
    },
}

/// Where each field's value came from, for error messages.
struct Origins<'a> {
    file: Option<&'a Path>,
    matches: Option<&'a ArgMatches>,
}

impl Origins<'_> {
    fn of(&self, field: &'static str, from_args: bool) -> String {
        if from_args {
            let env = format!("PIDMESH_{}", field.to_uppercase());
            let flag = format!("--{}", field.replace('_', "-"));
            return match self.matches.and_then(|m| m.value_source(field)) {
                Some(ValueSource::EnvVariable) => format!("from environment variable {env}"),
                Some(ValueSource::CommandLine) => format!("from flag {flag}"),
                _ => format!("from {flag} or {env}"),
            };
        }
        match self.file {
            Some(p) => format!("in {}", p.display()),
            None => "default".to_owned(),
        }
    }
}

/// Reads the file (if any), then applies `args` (environment and flags, already merged by clap)
/// over it, and validates the whole. `matches` tells flags from environment variables.
pub(crate) fn load(
    file: Option<&Path>,
    args: &Fields,
    matches: Option<&ArgMatches>,
) -> Result<NodeConfig, ConfigError> {
    let from_file: Fields = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().replace('\n', "\n  "),
            })?
        }
        None => Fields::default(),
    };
    let origins = Origins { file, matches };
    validate(from_file, args.clone(), &origins)
}

fn field_err(
    origins: &Origins<'_>,
    field: &'static str,
    from_args: bool,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Field {
        field,
        origin: origins.of(field, from_args),
        reason: reason.into(),
    }
}

fn validate(file: Fields, args: Fields, origins: &Origins<'_>) -> Result<NodeConfig, ConfigError> {
    // `pick!(field)` → (value, came_from_args).
    macro_rules! pick {
        ($f:ident) => {
            match args.$f {
                Some(v) => (Some(v), true),
                None => (file.$f, false),
            }
        };
    }
    let err = |field: &'static str, from_args: bool, reason: String| {
        field_err(origins, field, from_args, reason)
    };

    let (transport_s, t_args) = pick!(transport);
    let transport = match transport_s.as_deref().unwrap_or("quic") {
        "quic" => TransportKind::Quic,
        "tcp" => TransportKind::Tcp,
        "tcp+tls" => TransportKind::TcpTls,
        other => {
            return Err(err(
                "transport",
                t_args,
                format!("unknown transport {other:?} (expected quic, tcp or tcp+tls)"),
            ));
        }
    };

    let (preset, p_args) = pick!(preset);
    let preset = preset.unwrap_or_else(|| "lan".to_owned());
    let mut config = match preset.as_str() {
        "local" => Config::local(),
        "lan" => Config::lan(),
        "wan" => Config::wan(),
        other => {
            return Err(err(
                "preset",
                p_args,
                format!("unknown preset {other:?} (expected local, lan or wan)"),
            ));
        }
    };
    if let (Some(n), a) = pick!(cluster_size) {
        if n == 0 {
            return Err(err("cluster_size", a, "must be at least 1".into()));
        }
        config = config.for_cluster_size(n);
    }
    macro_rules! ms_override {
        ($f:ident, $apply:expr) => {
            if let (Some(ms), a) = pick!($f) {
                if ms == 0 || ms > 3_600_000 {
                    return Err(err(
                        stringify!($f),
                        a,
                        format!("{ms} ms is out of range (1..=3600000)"),
                    ));
                }
                #[allow(clippy::redundant_closure_call)]
                ($apply)(&mut config, Duration::from_millis(ms));
            }
        };
    }
    ms_override!(probe_period_ms, |c: &mut Config, d| c.swim.probe_period = d);
    ms_override!(probe_rtt_ms, |c: &mut Config, d| c.swim.probe_rtt = d);
    ms_override!(suspect_to_down_ms, |c: &mut Config, d| c
        .swim
        .suspect_to_down_after =
        d);
    ms_override!(sync_interval_ms, |c: &mut Config, d| c.sync_interval = d);
    ms_override!(delta_batch_window_ms, |c: &mut Config, d| c
        .delta_batch_window =
        d);
    if config.swim.probe_rtt >= config.swim.probe_period {
        let (_, a) = pick!(probe_rtt_ms);
        return Err(err(
            "probe_rtt_ms",
            a,
            format!(
                "the probe round-trip timeout ({:?}) must be below the probe period ({:?})",
                config.swim.probe_rtt, config.swim.probe_period
            ),
        ));
    }

    let (resolver_s, r_args) = pick!(resolver);
    let resolver_name = resolver_s.unwrap_or_else(|| "keep-oldest".to_owned());
    let resolver =
        parse_resolver(&resolver_name).map_err(|reason| err("resolver", r_args, reason))?;

    let (listen, l_args) = pick!(listen);
    let listen =
        listen.ok_or_else(|| err("listen", l_args, "is required (e.g. 0.0.0.0:7946)".into()))?;
    let (seeds, _) = pick!(seeds);
    let seeds: Vec<SocketAddr> = seeds
        .unwrap_or_default()
        .into_iter()
        .filter(|s| *s != listen)
        .collect();

    // TLS material: loaded now, so a bad file stops everything before anything binds.
    let (ca, ca_a) = pick!(tls_ca);
    let (cert, cert_a) = pick!(tls_cert);
    let (key, key_a) = pick!(tls_key);
    let tls = if transport == TransportKind::Tcp {
        None
    } else {
        let kind = if transport == TransportKind::Quic {
            "quic"
        } else {
            "tcp+tls"
        };
        let ca =
            ca.ok_or_else(|| err("tls_ca", ca_a, format!("is required with transport {kind}")))?;
        let cert = cert.ok_or_else(|| {
            err(
                "tls_cert",
                cert_a,
                format!("is required with transport {kind}"),
            )
        })?;
        let key = key.ok_or_else(|| {
            err(
                "tls_key",
                key_a,
                format!("is required with transport {kind}"),
            )
        })?;
        let tls = ClusterTls::from_pem_files(&ca, &cert, &key, ring_provider()).map_err(|e| {
            let (field, a) = match &e {
                PemLoadError::Read { part, .. }
                | PemLoadError::Malformed { part, .. }
                | PemLoadError::Missing { part, .. } => match part {
                    PemPart::Ca => ("tls_ca", ca_a),
                    PemPart::Chain => ("tls_cert", cert_a),
                    PemPart::Key => ("tls_key", key_a),
                },
                PemLoadError::KeyMismatch { .. } => ("tls_key", key_a),
                _ => ("tls_cert", cert_a),
            };
            err(field, a, e.to_string())
        })?;
        Some(tls)
    };

    let (name, n_args) = pick!(name);
    let name = match (name, &tls) {
        (Some(n), Some(t)) if n != t.node_name() => {
            return Err(err(
                "name",
                n_args,
                format!(
                    "{n:?} differs from the name in the certificate ({:?}); peers know a node by its certificate",
                    t.node_name()
                ),
            ));
        }
        (Some(n), _) => n,
        (None, Some(t)) => t.node_name().to_owned(),
        (None, None) => return Err(err("name", n_args, "is required".into())),
    };
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(err(
            "name",
            n_args,
            "must be 1 to 255 bytes of UTF-8 without control characters".into(),
        ));
    }

    let (admin, ad_a) = pick!(admin_listen);
    let admin_listen = admin.unwrap_or_else(|| {
        DEFAULT_ADMIN
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7947)))
    });
    let (token, tok_a) = pick!(admin_token);
    let (token_file, tf_a) = pick!(admin_token_file);
    let token = match (token, token_file) {
        (Some(t), _) => Some((t, tok_a)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "admin_token_file",
                    tf_a,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some((text.lines().next().unwrap_or("").trim().to_owned(), tf_a))
        }
        (None, None) => None,
    };
    if let Some((t, a)) = &token
        && (t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(err(
            "admin_token",
            *a,
            "must be at least 16 characters without whitespace".into(),
        ));
    }
    if !admin_listen.ip().is_loopback() && token.is_none() {
        return Err(ConfigError::Field {
            field: "admin_token",
            origin: format!("admin_listen {}", origins.of("admin_listen", ad_a)),
            reason: format!(
                "the admin API would listen on {admin_listen}, beyond loopback, without a bearer token: set admin_token or admin_token_file (or keep admin_listen on 127.0.0.1)"
            ),
        });
    }
    let (min_members, mm_a) = pick!(min_members);
    let min_members = min_members.unwrap_or(1);
    if min_members == 0 {
        return Err(err("min_members", mm_a, "must be at least 1".into()));
    }
    let (max_lease, ml_a) = pick!(max_lease_ms);
    let max_lease = max_lease.unwrap_or(3_600_000);
    if max_lease < 100 {
        return Err(err("max_lease_ms", ml_a, "must be at least 100".into()));
    }
    let (log, _) = pick!(log);
    let (singletons, s_a) = pick!(singletons);
    let singletons = singletons.unwrap_or_default();
    for n in &singletons {
        if n.is_empty() || n.len() > 255 || n.chars().any(char::is_control) {
            return Err(err(
                "singletons",
                s_a,
                format!("{n:?} is not a valid name (1 to 255 bytes, no control characters)"),
            ));
        }
    }
    let (sp, sp_a) = pick!(singleton_policy);
    let singleton_policy_name = sp.unwrap_or_else(|| "majority".to_owned());
    let singleton_policy = crate::singletons::parse_policy(&singleton_policy_name)
        .map_err(|reason| err("singleton_policy", sp_a, reason))?;
    let (key_file, kf_args) = pick!(cluster_key_file);
    let cluster_key = match (transport, key_file) {
        (TransportKind::Tcp, None) => {
            return Err(err(
                "cluster_key_file",
                kf_args,
                "is required with transport tcp (a file with 64 hex digits; plain TCP without a key would let anyone join)".into(),
            ));
        }
        (TransportKind::Tcp, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "cluster_key_file",
                    kf_args,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let first = text.lines().next().unwrap_or("");
            Some(ClusterKey::from_hex(first).map_err(|e| {
                err(
                    "cluster_key_file",
                    kf_args,
                    format!("{}: {e}", path.display()),
                )
            })?)
        }
        (_, _) => None,
    };

    Ok(NodeConfig {
        singletons,
        singleton_policy,
        singleton_policy_name,
        name,
        listen,
        seeds,
        transport,
        tls,
        cluster_key,
        config,
        resolver,
        resolver_name,
        preset,
        admin_listen,
        admin_token: token.map(|(t, _)| t),
        min_members,
        max_lease: Duration::from_millis(max_lease),
        log: log.unwrap_or_else(|| "info".to_owned()),
    })
}

/// Parses a built-in resolver name.
pub(crate) fn parse_resolver(s: &str) -> Result<Resolver, String> {
    match s {
        "keep-oldest" => Ok(Resolver::keep_oldest()),
        "keep-newest" => Ok(Resolver::keep_newest()),
        "kill-both" => Ok(Resolver::kill_both()),
        _ => match s.strip_prefix("node-priority:") {
            Some(list) => {
                let names: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .collect();
                if names.is_empty() {
                    return Err(
                        "node-priority needs at least one node name, e.g. node-priority:a,b".into(),
                    );
                }
                Ok(Resolver::node_priority(names))
            }
            None => Err(format!(
                "unknown resolver {s:?} (expected keep-oldest, keep-newest, kill-both or node-priority:a,b,...)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pidmesh-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes a config file; a plain-TCP one gets a valid cluster key file of its own (tested
    /// on its own in `tcp_needs_a_readable_cluster_key`). Tests run in parallel in one process,
    /// so no two configs share a key file: one test's rewrite would race another's read.
    fn write(name: &str, text: &str) -> PathBuf {
        let dir = dir();
        let p = dir.join(name);
        let mut text = text.to_string();
        if text.contains("transport = \"tcp\"\n") {
            let key = dir.join(format!("{name}.key"));
            std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
            text.push_str(&format!(
                "cluster_key_file = {:?}\n",
                key.display().to_string()
            ));
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn tcp_needs_a_readable_cluster_key() {
        let base = "name = \"a\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"tcp\"\n";
        let p = dir().join("nokey.toml");
        std::fs::write(&p, base).unwrap();
        let e = load(Some(&p), &Fields::default(), None).unwrap_err();
        assert_eq!(field_of(&e), "cluster_key_file", "{e}");
        let bad = dir().join("bad.key");
        std::fs::write(&bad, "not hex").unwrap();
        let p = dir().join("badkey.toml");
        std::fs::write(
            &p,
            format!("{base}cluster_key_file = {:?}\n", bad.display().to_string()),
        )
        .unwrap();
        let e = load(Some(&p), &Fields::default(), None).unwrap_err();
        assert_eq!(field_of(&e), "cluster_key_file", "{e}");
        assert!(e.to_string().contains("bad.key"), "{e}");
        let p = write("withkey.toml", base);
        let c = load(Some(&p), &Fields::default(), None).unwrap();
        assert!(c.cluster_key.is_some());
    }

    fn field_of(e: &ConfigError) -> &'static str {
        match e {
            ConfigError::Field { field, .. } => field,
            _ => "",
        }
    }

    #[test]
    fn minimal_tcp_config_is_accepted() {
        let p = write(
            "ok.toml",
            "name = \"a\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"tcp\"\nseeds = [\"127.0.0.1:7001\"]\npreset = \"local\"\n",
        );
        let c = load(Some(&p), &Fields::default(), None).unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.seeds.len(), 1);
        assert_eq!(c.transport, TransportKind::Tcp);
        assert_eq!(
            c.config.swim.probe_period,
            Config::local().swim.probe_period
        );
        assert!(c.admin_listen.ip().is_loopback());
    }

    #[test]
    fn args_override_the_file() {
        let p = write(
            "over.toml",
            "name = \"a\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"tcp\"\npreset = \"local\"\nprobe_period_ms = 700\n",
        );
        let args = Fields {
            name: Some("b".into()),
            probe_period_ms: Some(300),
            ..Fields::default()
        };
        let c = load(Some(&p), &args, None).unwrap();
        assert_eq!(c.name, "b");
        assert_eq!(c.config.swim.probe_period, Duration::from_millis(300));
    }

    #[test]
    fn bad_values_name_the_field_and_file() {
        let cases = [
            ("transport = \"udp\"\n", "transport"),
            ("preset = \"fast\"\n", "preset"),
            ("resolver = \"coin-flip\"\n", "resolver"),
            ("probe_period_ms = 0\n", "probe_period_ms"),
            ("min_members = 0\n", "min_members"),
            ("singleton_policy = \"quorum:0\"\n", "singleton_policy"),
            ("admin_listen = \"0.0.0.0:7947\"\n", "admin_token"),
            ("admin_token = \"short\"\n", "admin_token"),
        ];
        for (i, (line, field)) in cases.iter().enumerate() {
            let p = write(
                &format!("bad{i}.toml"),
                &if line.starts_with("transport") {
                    format!("name = \"a\"\nlisten = \"127.0.0.1:7000\"\n{line}")
                } else {
                    format!(
                        "name = \"a\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"tcp\"\n{line}"
                    )
                },
            );
            let e = load(Some(&p), &Fields::default(), None).unwrap_err();
            assert_eq!(field_of(&e), *field, "{line}: {e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
        // Unknown keys and wrong types are parse errors naming the file and the key.
        let p = write("unknown.toml", "name = \"a\"\nlisten_addr = \"x\"\n");
        let e = load(Some(&p), &Fields::default(), None).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("listen_addr"),
            "{e}"
        );
        let p = write("type.toml", "listen = \"not an address\"\n");
        let e = load(Some(&p), &Fields::default(), None).unwrap_err();
        assert!(e.to_string().contains("type.toml"), "{e}");
        // Missing required fields.
        let p = write("nolisten.toml", "name = \"a\"\ntransport = \"tcp\"\n");
        assert_eq!(
            field_of(&load(Some(&p), &Fields::default(), None).unwrap_err()),
            "listen"
        );
        let p = write("nocert.toml", "name = \"a\"\nlisten = \"127.0.0.1:7000\"\n");
        assert_eq!(
            field_of(&load(Some(&p), &Fields::default(), None).unwrap_err()),
            "tls_ca"
        );
        let p = write(
            "missingpem.toml",
            "listen = \"127.0.0.1:7000\"\ntls_ca = \"/nonexistent/ca.pem\"\ntls_cert = \"/nonexistent/n.pem\"\ntls_key = \"/nonexistent/n.key\"\n",
        );
        let e = load(Some(&p), &Fields::default(), None).unwrap_err();
        assert_eq!(field_of(&e), "tls_ca");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn non_loopback_admin_with_token_is_accepted() {
        let p = write(
            "tok.toml",
            "name = \"a\"\nlisten = \"127.0.0.1:7000\"\ntransport = \"tcp\"\nadmin_listen = \"0.0.0.0:7947\"\nadmin_token = \"0123456789abcdef\"\n",
        );
        let c = load(Some(&p), &Fields::default(), None).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn resolvers_by_name() {
        for ok in [
            "keep-oldest",
            "keep-newest",
            "kill-both",
            "node-priority:a,b",
        ] {
            assert!(parse_resolver(ok).is_ok(), "{ok}");
        }
        for bad in ["", "oldest", "node-priority:", "node-priority: , "] {
            assert!(parse_resolver(bad).is_err(), "{bad}");
        }
    }
}
