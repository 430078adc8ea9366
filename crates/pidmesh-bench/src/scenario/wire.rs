//! **wire**: the bytes a bulk registration costs, as pidmesh's payload and on the sockets, over
//! both transports in the same run.
//!
//! For QUIC (mutual TLS) and then TCP (cluster key), a fresh 3-node cluster registers N names
//! on node 0 (the `bulk` workload: one process, names of equal length, empty metadata) and
//! waits until every node holds them all. Between the first registration and convergence it
//! counts, over all three nodes:
//! - the payload bytes every node handed to its transport, every traffic class (SWIM included);
//! - the bytes every node's transport wrote to its sockets: UDP payload bytes for QUIC (packet
//!   headers, TLS records, acknowledgements, retransmissions, keep-alives), stream bytes for TCP
//!   (frame headers, session tags); IP/UDP/TCP headers are not counted.
//!
//! Both are reported per registration in total (every receiver's copy) and per registration
//! per receiving node (the total over the 2 receivers), so the transport's overhead shows
//! beside the payload.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::{Bytes, Cluster, Kind};
use crate::scenario::bulk::{bulk_name, register_all};

/// One transport's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WirePoint {
    /// The transport.
    pub transport: Kind,
    /// Registrations issued.
    pub n: usize,
    /// Receiving nodes (every node but the origin).
    pub receivers: usize,
    /// First registration → all entries on every node (s); `None`: did not converge.
    pub converge_secs: Option<f64>,
    /// Payload bytes handed to the transports by all nodes, every class.
    pub payload_bytes: u64,
    /// Of which the origin's delta batches.
    pub origin_delta_bytes: u64,
    /// Bytes written to the sockets by all nodes.
    pub socket_sent_bytes: u64,
    /// Bytes read from the sockets by all nodes.
    pub socket_received_bytes: u64,
}

impl WirePoint {
    fn per(&self, bytes: u64, per_receiver: bool) -> f64 {
        let d = self.n.max(1)
            * if per_receiver {
                self.receivers.max(1)
            } else {
                1
            };
        bytes as f64 / d as f64
    }

    /// Payload bytes per registration, all receivers' copies together.
    pub fn payload_per_registration(&self) -> f64 {
        self.per(self.payload_bytes, false)
    }

    /// Payload bytes per registration per receiving node.
    pub fn payload_per_registration_per_receiver(&self) -> f64 {
        self.per(self.payload_bytes, true)
    }

    /// Socket bytes per registration, all receivers' copies together.
    pub fn socket_per_registration(&self) -> f64 {
        self.per(self.socket_sent_bytes, false)
    }

    /// Socket bytes per registration per receiving node.
    pub fn socket_per_registration_per_receiver(&self) -> f64 {
        self.per(self.socket_sent_bytes, true)
    }

    /// Socket bytes over payload bytes (1.0: no overhead).
    pub fn overhead(&self) -> f64 {
        self.socket_sent_bytes as f64 / self.payload_bytes.max(1) as f64
    }
}

/// What the wire scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireResult {
    /// One point per transport, QUIC first.
    pub points: Vec<WirePoint>,
}

async fn one(s: &Settings, kind: Kind, n: usize) -> anyhow::Result<WirePoint> {
    let cluster = Cluster::start(kind, 3, s.config()).await?;
    let (pid, _mailbox) = cluster.nodes[0].spawn_mailbox()?;
    let names: Vec<String> = (0..n).map(|i| bulk_name("bulk/", i)).collect();
    let (payload_before, socket_before) = (cluster.bytes_now(), cluster.socket_now());
    let t0 = Instant::now();
    let guards = register_all(&cluster.nodes[0], &pid, &names)
        .await
        .context("register")?;
    let converged = crate::cluster::wait_for(s.converge_limit(n), Duration::from_millis(1), || {
        cluster.entries().iter().all(|&c| c >= n)
    })
    .await
    .map(|_| t0.elapsed().as_secs_f64());
    let (payload_after, socket_after) = (cluster.bytes_now(), cluster.socket_now());
    let payload = payload_after
        .iter()
        .zip(&payload_before)
        .fold(Bytes::default(), |acc, (a, b)| acc.plus(&a.since(b)));
    let origin_delta = payload_after[0].since(&payload_before[0]).delta;
    let (mut sent, mut received) = (0u64, 0u64);
    for (a, b) in socket_after.iter().zip(&socket_before) {
        sent += a.0.saturating_sub(b.0);
        received += a.1.saturating_sub(b.1);
    }
    let point = WirePoint {
        transport: kind,
        n,
        receivers: cluster.nodes.len() - 1,
        converge_secs: converged,
        payload_bytes: payload.total(),
        origin_delta_bytes: origin_delta,
        socket_sent_bytes: sent,
        socket_received_bytes: received,
    };
    cluster.shutdown().await;
    drop(guards);
    Ok(point)
}

/// Runs the scenario on QUIC, then TCP.
///
/// # Errors
/// A cluster did not form, or a registration failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<WireResult> {
    let mut points = Vec::new();
    for kind in [Kind::Quic, Kind::Tcp] {
        let p = one(s, kind, n)
            .await
            .with_context(|| format!("wire over {}", kind.label()))?;
        eprintln!(
            "   wire {}: payload {:.1} B/registration ({:.1} per receiver), socket {:.1} B ({:.1} per receiver), ×{:.2}",
            kind.label(),
            p.payload_per_registration(),
            p.payload_per_registration_per_receiver(),
            p.socket_per_registration(),
            p.socket_per_registration_per_receiver(),
            p.overhead()
        );
        points.push(p);
    }
    Ok(WireResult { points })
}

#[cfg(test)]
mod tests {
    use super::WirePoint;
    use crate::cluster::Kind;

    #[test]
    fn per_registration_figures() {
        let p = WirePoint {
            transport: Kind::Quic,
            n: 100,
            receivers: 2,
            converge_secs: Some(0.1),
            payload_bytes: 5_000,
            origin_delta_bytes: 4_800,
            socket_sent_bytes: 6_000,
            socket_received_bytes: 6_000,
        };
        assert_eq!(p.payload_per_registration(), 50.0);
        assert_eq!(p.payload_per_registration_per_receiver(), 25.0);
        assert_eq!(p.socket_per_registration(), 60.0);
        assert_eq!(p.socket_per_registration_per_receiver(), 30.0);
        assert!((p.overhead() - 1.2).abs() < 1e-9);
    }
}
