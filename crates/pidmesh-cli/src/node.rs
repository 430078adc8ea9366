//! `pidmesh run`: start a node from a validated configuration, serve the HTTP API, and leave
//! gracefully on SIGTERM/SIGINT (a second signal exits at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pidmesh::{CancellationToken, Registry};
use pidmesh_transport::Transport;
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use pidmesh_transport_tcp::{TcpConfig, TcpTransport};

use crate::config::{NodeConfig, TransportKind};
use crate::server::{AppState, router};
use crate::sidecar::Sidecar;

/// Why the node could not start (after the configuration was accepted).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("cannot bind the admin API on {addr}: {source}")]
    AdminBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the cluster transport: {0}")]
    Transport(String),
    #[error("cannot become a singleton candidate: {0}")]
    Singleton(String),
    #[error("cannot start the node: {0}")]
    Start(#[from] pidmesh::StartError),
}

async fn start_with<T: Transport>(cfg: &NodeConfig, t: T) -> Result<Registry, RunError> {
    Ok(Registry::builder()
        .node_name(cfg.name.clone())
        .config(cfg.config.clone())
        .resolver(cfg.resolver.clone())
        .seeds(cfg.seeds.iter().copied())
        .transport(t)
        .start()
        .await?)
}

/// Runs the node until a signal; returns the process exit code.
pub(crate) async fn run(
    cfg: NodeConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<i32, RunError> {
    let t0 = Instant::now();
    // Bind the admin port first: if it is taken, nothing has joined the cluster yet.
    let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|source| RunError::AdminBind {
            addr: cfg.admin_listen,
            source,
        })?;
    let admin_addr = admin.local_addr().unwrap_or(cfg.admin_listen);
    let registry = match (cfg.transport, cfg.tls.clone()) {
        (TransportKind::Quic, Some(tls)) => {
            let t = QuicTransport::bind(cfg.listen, QuicConfig::new(tls))
                .await
                .map_err(|e| RunError::Transport(e.to_string()))?;
            start_with(&cfg, t).await?
        }
        (TransportKind::TcpTls, Some(tls)) => {
            let t = TcpTransport::bind(cfg.listen, TcpConfig::with_tls(tls))
                .await
                .map_err(|e| RunError::Transport(e.to_string()))?;
            start_with(&cfg, t).await?
        }
        (TransportKind::Tcp, _) => {
            let key = cfg.cluster_key.clone().ok_or_else(|| {
                RunError::Transport("transport tcp needs a cluster key".to_string())
            })?;
            let t = TcpTransport::bind(cfg.listen, TcpConfig::with_cluster_key(key))
                .await
                .map_err(|e| RunError::Transport(e.to_string()))?;
            start_with(&cfg, t).await?
        }
        (TransportKind::Quic | TransportKind::TcpTls, None) => {
            return Err(RunError::Transport(
                "this transport needs the TLS files (tls_ca, tls_cert, tls_key)".to_string(),
            ));
        }
    };
    let stop = CancellationToken::new();
    let sidecar = Sidecar::new(registry.clone(), cfg.max_lease);
    sidecar.spawn_reaper(stop.clone());
    let table = crate::singletons::Table::default();
    let _singleton_tasks = crate::singletons::start(
        &registry,
        &cfg.singletons,
        cfg.singleton_policy,
        &cfg.singleton_policy_name,
        &table,
    )
    .await
    .map_err(|e| RunError::Singleton(e.to_string()))?;
    let state = AppState {
        registry: registry.clone(),
        sidecar: sidecar.clone(),
        token: cfg.admin_token.as_deref().map(Arc::from),
        min_members: cfg.min_members,
        metrics,
        started: t0,
        singletons: table,
    };
    let app = router(state);
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        let r = axum::serve(admin, app)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    tracing::info!(
        node = %registry.node_id(),
        listen = %registry.local_addr(),
        transport = ?cfg.transport,
        preset = %cfg.preset,
        resolver = %cfg.resolver_name,
        admin = %admin_addr,
        seeds = ?cfg.seeds,
        startup_ms = t0.elapsed().as_millis() as u64,
        "pidmesh node started"
    );

    wait_signal().await;
    tracing::info!("signal received: leaving the cluster (a second signal exits at once)");
    // A second signal exits at once, whatever the shutdown is doing.
    tokio::spawn(async {
        wait_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    sidecar.end_all();
    if tokio::time::timeout(Duration::from_secs(15), registry.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("graceful shutdown took over 15 s; exiting");
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    tracing::info!("pidmesh node stopped");
    Ok(0)
}

#[cfg(unix)]
async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
