//! The report's same-run comparison sections: pidmesh next to Erlang/OTP's and
//! ractor_cluster's `pg`, the ractor peer's details, and the wire table (payload and socket
//! bytes per registration over both transports).

use std::fmt::Write as _;

use super::{Results, count, ns, rate, secs};
use crate::cluster::Kind;

/// The same-run peer table (pidmesh next to Erlang/OTP's and ractor_cluster's `pg` on the
/// same workload) and the wire table (payload and socket bytes per registration, both
/// transports). Empty when neither was measured.
pub(super) fn peers_and_wire(r: &Results) -> String {
    let mut s = String::new();
    let erl = r.erlang.as_ref().and_then(|o| o.result.as_ref());
    let rac = r.ractor.as_ref().and_then(|o| o.result.as_ref());
    let na = || "—".to_string();
    let load1 = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (None, None) => na(),
        (a, b) => {
            let f = |x: Option<f64>| x.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
            format!("{} → {}", f(a), f(b))
        }
    };
    let (g, b) = (r.groups.as_ref(), r.bulk.as_ref());
    if (g.is_some() || b.is_some()) && (erl.is_some() || rac.is_some()) {
        let n = g.map(|g| g.n).or(b.map(|b| b.n)).unwrap_or(0);
        // pidmesh's own group joins when the groups scenario ran, else the bulk registrations.
        let (p_visible, p_rate, p_local, p_remote) = match (g, b) {
            (Some(g), _) => (
                secs(g.converge_secs),
                rate(g.joins_per_sec),
                g.members_of_origin_ns.map_or_else(na, ns),
                g.members_of_replica_ns.map_or_else(na, ns),
            ),
            (None, Some(b)) => (
                format!("{} (registrations)", secs(b.converge_secs)),
                format!("{} (registrations)", rate(b.issue_per_sec)),
                b.members_of_random_ns.map_or_else(na, ns),
                na(),
            ),
            (None, None) => (na(), na(), na(), na()),
        };
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| same workload, same run | pidmesh | Erlang/OTP `pg` | ractor_cluster `pg`{} |",
            rac.map_or_else(String::new, |x| format!(" {}", x.ractor_version))
        );
        let _ = writeln!(s, "|---|---|---|---|");
        let rows: [[String; 4]; 5] = [
            [
                format!(
                    "{} one-member groups joined on one node → visible on all 3",
                    count(n)
                ),
                p_visible,
                erl.map_or_else(na, |e| secs(Some(e.pg_bulk_secs))),
                rac.map_or_else(na, |x| secs(Some(x.bulk_secs))),
            ],
            [
                "joins issued per second on that node".to_string(),
                p_rate,
                erl.map_or_else(na, |e| rate(e.pg_joins_per_sec)),
                rac.map_or_else(na, |x| rate(x.joins_per_sec)),
            ],
            [
                "members of a 1-member group among N, scattered order, on the members' node"
                    .to_string(),
                p_local,
                erl.map_or_else(na, |e| ns(e.pg_get_members_ns)),
                rac.map_or_else(na, |x| ns(x.get_members_ns)),
            ],
            [
                "the same on another node (members remote)".to_string(),
                p_remote,
                erl.and_then(|e| e.pg_get_members_ns_node2)
                    .map_or_else(na, ns),
                rac.map_or_else(na, |x| ns(x.get_members_ns_node2)),
            ],
            [
                "1-minute load average, start → end (pidmesh: the whole run)".to_string(),
                load1(
                    r.machine.loadavg_start.map(|l| l[0]),
                    r.machine.loadavg_end.map(|l| l[0]),
                ),
                erl.map_or_else(na, |e| load1(e.loadavg_1m_start, e.loadavg_1m_end)),
                rac.map_or_else(na, |x| load1(x.loadavg_1m_start, x.loadavg_1m_end)),
            ],
        ];
        for row in rows {
            let _ = writeln!(s, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
    }
    if let Some(o) = &r.ractor
        && o.result.is_none()
    {
        let _ = writeln!(s, "\nractor_cluster: not available ({})", o.note);
    }
    if let Some(w) = &r.wire {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| wire, {} registrations on one node → 2 receivers | payload B/registration (per receiver) | on the sockets B/registration (per receiver) | sockets ÷ payload | converged |",
            count(w.points.first().map_or(0, |p| p.n))
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for p in &w.points {
            let label = match p.transport {
                Kind::Quic => "QUIC + mTLS (UDP payload bytes)",
                Kind::Tcp => "TCP, cluster key (stream bytes)",
            };
            let _ = writeln!(
                s,
                "| {label} | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.2} | {} |",
                p.payload_per_registration(),
                p.payload_per_registration_per_receiver(),
                p.socket_per_registration(),
                p.socket_per_registration_per_receiver(),
                p.overhead(),
                secs(p.converge_secs)
            );
        }
    }
    s
}

/// The details line of the ractor_cluster peer (how it ran, its load averages).
pub(super) fn ractor_details(r: &Results) -> String {
    let Some(o) = &r.ractor else {
        return String::new();
    };
    match &o.result {
        Some(x) => {
            let load = |l: Option<f64>| l.map_or_else(|| "unknown".into(), |v| format!("{v:.2}"));
            format!(
                "- ractor_cluster {}: `bench/ractor` ({}; {}) built and ran in {:.0} s; {} joins issued in {}, visible on each node at {}; 1-minute load average {} at its start, {} at its end.\n",
                x.ractor_version,
                x.topology,
                x.members,
                o.wall_secs,
                count(x.bulk_n as usize),
                secs(Some(x.issue_secs)),
                x.node_secs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("node {i} {}", secs(Some(*t))))
                    .collect::<Vec<_>>()
                    .join(", "),
                load(x.loadavg_1m_start),
                load(x.loadavg_1m_end)
            )
        }
        None => format!("- ractor_cluster: not available ({}).\n", o.note),
    }
}

#[cfg(test)]
mod tests {
    use super::{peers_and_wire, ractor_details};
    use crate::report::Results;

    fn results() -> Results {
        let json = serde_json::json!({
            "command": "test", "transport": "quic", "preset": "lan", "smoke": false,
            "wall_secs": {}, "total_secs": 1.0, "errors": {},
            "machine": {"nproc": 2, "cpu": "x", "rustc": "r", "kernel": "k", "date": "d",
                        "profile": "release", "loadavg_start": [0.5, 0.4, 0.3],
                        "loadavg_end": [0.75, 0.5, 0.25]},
            "bulk": null, "latency": null, "catchup": null, "failure": null, "heal": null,
            "scale": null,
            "groups": {"n": 1000, "issue_secs": 0.01, "joins_per_sec": 100000.0,
                       "converge_secs": 0.125, "members_of_origin_ns": 111.0,
                       "members_of_replica_ns": 122.0},
            "erlang": {"note": "ran", "script": "bench/erlang/run.sh", "wall_secs": 3.0,
                       "result": {"otp_release": "25", "pg_bulk_n": 1000, "pg_bulk_secs": 0.25,
                                  "pg_joins_per_sec": 20000.0, "pg_get_members_ns": 333.0,
                                  "pg_get_members_ns_node2": 344.0, "global_n": 10,
                                  "global_regs_per_sec": 5.0, "global_whereis_ns": 1.0,
                                  "loadavg_1m_start": 1.5, "loadavg_1m_end": 1.25}},
            "ractor": {"note": "ran", "wall_secs": 4.0,
                       "result": {"ractor_version": "0.16.5", "bulk_n": 1000,
                                  "issue_secs": 0.02, "joins_per_sec": 50000.0,
                                  "bulk_secs": 0.5, "node_secs": [0.02, 0.4, 0.5],
                                  "get_members_ns": 555.0, "get_members_ns_node2": 566.0,
                                  "loadavg_1m_start": 2.5, "loadavg_1m_end": 2.25}},
            "wire": {"points": [{"transport": "quic", "n": 1000, "receivers": 2,
                                 "converge_secs": 0.1, "payload_bytes": 60000,
                                 "origin_delta_bytes": 50000, "socket_sent_bytes": 66000,
                                 "socket_received_bytes": 66000}]}
        });
        serde_json::from_value(json).expect("a results document")
    }

    #[test]
    fn peer_table_puts_the_three_side_by_side() {
        let t = peers_and_wire(&results());
        assert!(t.contains("| 125 ms | 250 ms | 500 ms |"), "{t}");
        assert!(t.contains("| 100 k/s | 20 k/s | 50 k/s |"), "{t}");
        assert!(t.contains("| 111 ns | 333 ns | 555 ns |"), "{t}");
        assert!(t.contains("| 122 ns | 344 ns | 566 ns |"), "{t}");
        assert!(
            t.contains("| 0.50 → 0.75 | 1.50 → 1.25 | 2.50 → 2.25 |"),
            "{t}"
        );
        // 60,000 B over 1,000 registrations and 2 receivers; sockets 10 % more.
        assert!(t.contains("| 60.0 (30.0) | 66.0 (33.0) | 1.10 |"), "{t}");
        let d = ractor_details(&results());
        assert!(
            d.contains("load average 2.50 at its start, 2.25 at its end"),
            "{d}"
        );
    }

    #[test]
    fn missing_peers_say_so() {
        let mut r = results();
        r.ractor = Some(crate::scenario::ractor::RactorOutcome {
            result: None,
            note: "skipped (--no-ractor)".into(),
            wall_secs: 0.0,
        });
        let t = peers_and_wire(&r);
        assert!(
            t.contains("ractor_cluster: not available (skipped (--no-ractor))"),
            "{t}"
        );
        assert!(t.contains("| 125 ms | 250 ms | — |"), "{t}");
    }
}
