//! Replays the committed seeds of the node-level fuzz targets (`fuzz/seeds/swim_datagram`,
//! `fuzz/seeds/node_messages`) through the same checks the fuzz targets run
//! (`fuzz/src/node_checks.rs`, included below), on the stable toolchain.

#[path = "../../../fuzz/src/node_checks.rs"]
mod node_checks;

use std::path::PathBuf;

fn replay(target: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed directory {} is missing: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let mut valid = 0;
    for f in &files {
        let data = std::fs::read(f).expect("readable seed");
        match std::panic::catch_unwind(|| node_checks::check(target, &data)) {
            Ok(Some(true)) => valid += 1,
            Ok(Some(false)) => {}
            Ok(None) => panic!("unknown fuzz target {target}"),
            Err(_) => panic!(
                "seed {} broke a property of {target} (see the panic above)",
                f.display()
            ),
        }
    }
    assert!(
        valid > 0,
        "none of the {} seeds of {target} decodes",
        files.len()
    );
    println!("{target}: {} seeds, {valid} decode", files.len());
}

#[test]
fn swim_datagram_seeds() {
    replay("swim_datagram");
}

#[test]
fn node_messages_seeds() {
    replay("node_messages");
}

/// Writes the generated seeds (`gen-*`) of both targets; run with
/// `PIDMESH_WRITE_FUZZ_SEEDS=1 cargo test -p pidmesh-proto --test fuzz_seeds write_seeds`.
#[test]
fn write_seeds() {
    if std::env::var_os("PIDMESH_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (target, seeds) in [
        ("swim_datagram", seeds::swim()),
        ("node_messages", seeds::messages()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("creates");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("gen-{name}")), bytes).expect("writes");
        }
    }
}

mod seeds {
    use std::time::{Duration, Instant};

    use pidmesh_proto::TrafficClass;

    use super::node_checks::{self, PEER};

    /// Strips the wire's `Datagram` envelope (version tag, length prefix) from an encoded
    /// datagram, leaving the SWIM packet.
    fn swim_of(datagram: &[u8]) -> Vec<u8> {
        match pidmesh_wire::decode::<pidmesh_wire::Datagram>(datagram) {
            Ok(pidmesh_wire::Datagram::V1 { swim }) => swim.to_vec(),
            Err(e) => panic!("own datagram does not decode: {e}"),
        }
    }

    /// What a real "n1" would send to "n0": two nodes run against each other for a while and
    /// every message from n1 to n0 is recorded.
    fn exchange() -> Vec<(TrafficClass, Vec<u8>)> {
        use bytes::Bytes;
        use pidmesh_proto::{Config, Node, NodeId, NodeOptions, Resolver};
        let start = Instant::now();
        let mk = |name: &str, addr, seed| {
            Node::new(
                NodeOptions {
                    id: NodeId::new(name, 1),
                    addr,
                    seeds: vec![node_checks::node_addr()],
                    rng_seed: seed,
                    wall_ms_at_start: 1_700_000_000_000,
                },
                Config::local(),
                Resolver::keep_oldest(),
                start,
            )
        };
        let mut n0 = mk("n0", node_checks::node_addr(), 1);
        let mut n1 = mk(PEER, node_checks::peer_addr(), 2);
        let mut out = Vec::new();
        let mut now = start;
        for step in 0..400u32 {
            if step == 50 {
                let p = n1.spawn_pid();
                n1.register(now, "svc", &p, Bytes::from_static(b"x"))
                    .expect("registers");
                n1.join(now, "workers", &p, Bytes::new()).expect("joins");
            }
            if step == 120 {
                let p = n1.spawn_pid();
                n1.register(now, "solo", &p, Bytes::new())
                    .expect("registers");
            }
            now += Duration::from_millis(10);
            n0.handle_timeout(now);
            n1.handle_timeout(now);
            while let Some(t) = n1.poll_transmit() {
                out.push((t.class, t.payload.to_vec()));
                n0.handle_message(
                    now,
                    node_checks::peer_addr(),
                    Some(PEER),
                    t.class,
                    &t.payload,
                );
            }
            while let Some(t) = n0.poll_transmit() {
                n1.handle_message(
                    now,
                    node_checks::node_addr(),
                    Some("n0"),
                    t.class,
                    &t.payload,
                );
            }
            while n0.poll_event().is_some() {}
            while n1.poll_event().is_some() {}
        }
        out
    }

    pub(super) fn swim() -> Vec<(String, Vec<u8>)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (class, payload) in exchange() {
            if class != TrafficClass::Membership {
                continue;
            }
            let swim = swim_of(&payload);
            // One seed per distinct length keeps the directory small and varied.
            if seen.insert(swim.len()) && out.len() < 12 {
                let mut v = vec![1u8];
                v.extend_from_slice(&swim);
                out.push((format!("{}-{}", out.len(), swim.len()), v));
            }
        }
        out
    }

    fn record(out: &mut Vec<u8>, step: u8, class: TrafficClass, payload: &[u8]) {
        let class_byte = TrafficClass::ALL
            .iter()
            .position(|c| *c == class)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0);
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.push(step);
        out.push(class_byte);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&payload[..usize::from(len)]);
    }

    pub(super) fn messages() -> Vec<(String, Vec<u8>)> {
        let all = exchange();
        let mut out = Vec::new();
        // The whole conversation in a few slices, and one seed per registry class.
        for (i, chunk) in all.chunks(all.len().div_ceil(4).max(1)).enumerate() {
            let mut v = Vec::new();
            for (class, p) in chunk {
                record(&mut v, 10, *class, p);
            }
            out.push((format!("conversation-{i}"), v));
        }
        for class in [TrafficClass::Delta, TrafficClass::Sync] {
            let mut v = Vec::new();
            for (c, p) in all.iter().filter(|(c, _)| *c == class).take(8) {
                record(&mut v, 1, *c, p);
            }
            out.push((format!("only-{}", class.as_str()), v));
        }
        out
    }
}
