//! The Prometheus recorder and the description (unit and help) of every metric pidmesh emits.
//!
//! Labels stay low-cardinality: transport, traffic class, event kind, error reason; never a
//! name, a pid or a peer address.

use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Every metric the library and this binary emit: (name, kind, unit, help).
pub(crate) const METRICS: &[(&str, Kind, Unit, &str)] = &[
    (
        "pidmesh.entries",
        Kind::Gauge,
        Unit::Count,
        "Live entries (names and group members) in this node's replica",
    ),
    (
        "pidmesh.peers",
        Kind::Gauge,
        Unit::Count,
        "Live peers this node sees (itself excluded)",
    ),
    (
        "pidmesh.events",
        Kind::Counter,
        Unit::Count,
        "Registry events emitted on this node, by kind",
    ),
    (
        "pidmesh.messages.received",
        Kind::Counter,
        Unit::Count,
        "Cluster messages received, by traffic class",
    ),
    (
        "pidmesh.mail.send_errors",
        Kind::Counter,
        Unit::Count,
        "Mailbox messages that could not be handed to the transport",
    ),
    (
        "pidmesh.mail.rejected",
        Kind::Counter,
        Unit::Count,
        "Incoming mailbox messages rejected, by reason",
    ),
    (
        "pidmesh.mail.dropped",
        Kind::Counter,
        Unit::Count,
        "Incoming mailbox messages dropped because the mailbox was full or gone",
    ),
    (
        "pidmesh.transport.send_errors",
        Kind::Counter,
        Unit::Count,
        "Messages the transport refused to send, by traffic class",
    ),
    (
        "pidmesh.transport.sent",
        Kind::Counter,
        Unit::Count,
        "Messages sent by the transport, by transport and class",
    ),
    (
        "pidmesh.transport.received",
        Kind::Counter,
        Unit::Count,
        "Messages received by the transport, by transport and class",
    ),
    (
        "pidmesh.transport.dropped",
        Kind::Counter,
        Unit::Count,
        "Messages the transport dropped, by transport, class and reason",
    ),
    (
        "pidmesh.transport.malformed",
        Kind::Counter,
        Unit::Count,
        "Malformed frames or connections from peers, by transport and kind",
    ),
    (
        "pidmesh.transport.connect_failures",
        Kind::Counter,
        Unit::Count,
        "Failed outgoing connection attempts, by transport",
    ),
    (
        "pidmesh.transport.handshake_failures",
        Kind::Counter,
        Unit::Count,
        "Failed TLS handshakes, by transport",
    ),
    (
        "pidmesh.sidecar.sessions",
        Kind::Gauge,
        Unit::Count,
        "Open sidecar sessions on this node",
    ),
    (
        "pidmesh.sidecar.lost",
        Kind::Counter,
        Unit::Count,
        "Names sidecar sessions lost (conflicts and other removals they did not ask for)",
    ),
];

/// Metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

/// Describes every metric to the installed recorder.
pub(crate) fn describe() {
    for (name, kind, unit, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(*name, *unit, *help),
            Kind::Gauge => describe_gauge!(*name, *unit, *help),
        }
    }
}

/// Installs the process-wide Prometheus recorder and describes every metric.
///
/// # Errors
/// If a recorder is already installed.
pub(crate) fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}
