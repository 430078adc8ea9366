//! `Node::register_seq` is `Node::register` without the copy of the entry: the same checks,
//! the same `Registered` event, the same entry in the store and in the next batch.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Config, Event, Node, NodeId, NodeOptions, RegisterError, Resolver};

fn node(start: Instant) -> Node {
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("node-0", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: 1_790_000_000_000,
    };
    Node::new(opts, Config::lan(), Resolver::keep_oldest(), start)
}

fn registered(node: &mut Node) -> Vec<pidmesh_proto::Entry> {
    let mut out = Vec::new();
    while let Some(e) = node.poll_event() {
        if let Event::Registered(entry) = e {
            out.push(entry);
        }
    }
    out
}

#[test]
fn register_seq_reports_and_stores_what_register_does() {
    let start = Instant::now();
    let (mut a, mut b) = (node(start), node(start));
    let (pa, pb) = (a.spawn_pid(), b.spawn_pid());
    registered(&mut a);
    registered(&mut b);
    let mut now = start;
    for i in 0..50 {
        now += Duration::from_micros(3);
        let name = format!("svc/{i}");
        let meta = Bytes::from(format!("m{i}"));
        let entry = a
            .register(now, &name, &pa, meta.clone())
            .expect("registers");
        let seq = b.register_seq(now, &name, &pb, meta).expect("registers");
        assert_eq!(seq, entry.dot.seq, "{name}");
        let (ea, eb) = (registered(&mut a), registered(&mut b));
        assert_eq!(ea, vec![entry.clone()], "{name}");
        assert_eq!(eb, ea, "{name}: the same event");
        assert_eq!(
            b.lookup(&name),
            Some(entry),
            "{name}: the same entry stored"
        );
    }
    // The same refusals, and nothing changed by them.
    let taken = b.register_seq(now, "svc/3", &pb, Bytes::new());
    assert!(
        matches!(taken, Err(RegisterError::AlreadyRegistered(_))),
        "{taken:?}"
    );
    let bad = b.register_seq(now, "", &pb, Bytes::new());
    assert!(matches!(bad, Err(RegisterError::InvalidName(_))), "{bad:?}");
    let big = b.register_seq(now, "svc/big", &pb, Bytes::from(vec![0u8; 1 << 20]));
    assert!(
        matches!(big, Err(RegisterError::MetaTooLarge(_))),
        "{big:?}"
    );
    assert!(registered(&mut b).is_empty());
    assert_eq!(b.registry().len(), a.registry().len());
}
