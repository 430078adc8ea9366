//! The child side of the `node-memory` scenario: one pidmesh node in a process of its own,
//! driven over stdin/stdout by the parent (`pidmesh-bench __node ...`, not meant for people).
//!
//! The node binds QUIC with mutual TLS on 127.0.0.1 (the CA certificate, its chain and key
//! are DER files the parent wrote), joins through `--seed` if given, prints `addr <addr>` and
//! then answers one line per command:
//! - `register <n>`: registers `n` names of 16 bytes (`n/00000000000042`) with one process of
//!   its own and keeps the guards, as an application does → `registered <seconds>`;
//! - `stats` → `stats <entries> <members> <heap bytes>` (heap bytes as counted by the binary's
//!   global allocator);
//! - `quit`: drops the guards, stops the node gracefully and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use pidmesh::{Registration, Registry};
use pidmesh_transport::tls::{ClusterTls, ring_provider};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::cluster::AnyTransport;

/// The name of the `i`th of `n` registered names: 16 bytes.
pub fn name16(i: usize) -> String {
    format!("n/{i:014}")
}

/// How the child was asked to run.
struct Args {
    name: String,
    certs: PathBuf,
    seed: Option<SocketAddr>,
    preset: String,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let (mut name, mut certs, mut seed, mut preset) = (None, None, None, "lan".to_string());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--name" => name = Some(value()?),
            "--certs" => certs = Some(PathBuf::from(value()?)),
            "--seed" => seed = Some(value()?.parse().context("--seed")?),
            "--preset" => preset = value()?,
            other => bail!("__node: unexpected argument {other:?}"),
        }
    }
    Ok(Args {
        name: name.context("__node needs --name")?,
        certs: certs.context("__node needs --certs")?,
        seed,
        preset,
    })
}

/// Runs the child until `quit` or the end of stdin. `heap` reads the global allocator's count.
///
/// # Errors
/// Bad arguments, unreadable certificates, a transport that does not bind, a failed
/// registration, or a broken pipe to the parent.
pub async fn run(args: &[String], heap: impl Fn() -> usize) -> anyhow::Result<()> {
    let a = parse(args)?;
    let read = |f: &str| {
        let p = a.certs.join(f);
        std::fs::read(&p).with_context(|| format!("read {}", p.display()))
    };
    let ca = CertificateDer::from(read("ca.der")?);
    let chain = vec![CertificateDer::from(read(&format!("{}.der", a.name))?)];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read(&format!("{}.key", a.name))?));
    let tls = ClusterTls::builder(ca, chain, key, ring_provider())
        .build()
        .context("TLS configuration")?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let transport = AnyTransport::Quic(QuicTransport::bind(any, QuicConfig::new(tls)).await?);
    let addr = pidmesh_transport::Transport::local_addr(&transport);
    let config = match a.preset.as_str() {
        "local" => pidmesh::Config::local(),
        _ => pidmesh::Config::lan(),
    };
    let registry = Registry::builder()
        .node_name(a.name.clone())
        .seeds([a.seed.unwrap_or(addr)])
        .config(config)
        .transport(transport)
        .start()
        .await?;

    let mut out = tokio::io::stdout();
    say(&mut out, format!("addr {addr}")).await?;
    let mut guards: Vec<Registration> = Vec::new();
    let mut mailboxes = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("register"), Some(n)) => {
                let n: usize = n.parse().context("register <n>")?;
                let (pid, mailbox) = registry.spawn_mailbox()?;
                mailboxes.push(mailbox);
                guards.reserve(n);
                let t = Instant::now();
                for i in 0..n {
                    guards.push(registry.register(&name16(i), &pid, Vec::new()).await?);
                }
                say(
                    &mut out,
                    format!("registered {}", t.elapsed().as_secs_f64()),
                )
                .await?;
            }
            (Some("stats"), _) => {
                let members = registry.members().len();
                let entries = registry.stats().entries;
                say(&mut out, format!("stats {entries} {members} {}", heap())).await?;
            }
            (Some("quit"), _) => break,
            _ => bail!("__node: unknown command {line:?}"),
        }
    }
    drop(guards);
    registry.shutdown().await;
    Ok(())
}

async fn say(out: &mut tokio::io::Stdout, mut line: String) -> anyhow::Result<()> {
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}
