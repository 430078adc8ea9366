//! The properties of the fuzz targets that drive a whole `pidmesh_proto::Node`, shared by the
//! fuzz targets (`fuzz/fuzz_targets/swim_datagram.rs`, `node_messages.rs`) and the stable seed
//! replay test (`crates/pidmesh-proto/tests/fuzz_seeds.rs`), both through `#[path]`.
//!
//! Every check returns `true` if the input got past the wire decoding at least once (so it
//! exercised more than the error path), and panics when a property is broken.

// Each includer uses only some of these functions.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{Codec, Header, Message, PostcardCodec};
use pidmesh_proto::{Config, Member, Node, NodeId, NodeOptions, Resolver, TrafficClass};
use pidmesh_wire::{Datagram, encode};

/// The node-level fuzz targets, by name: the seed directories are `fuzz/seeds/<name>/`.
pub(crate) const TARGETS: [&str; 2] = ["swim_datagram", "node_messages"];

/// Runs the check of `target` on `data`; `None` for an unknown target.
pub(crate) fn check(target: &str, data: &[u8]) -> Option<bool> {
    Some(match target {
        "swim_datagram" => swim_datagram(data),
        "node_messages" => node_messages(data),
        _ => return None,
    })
}

/// The fake peer every message comes from.
pub(crate) const PEER: &str = "n1";

pub(crate) fn node_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}

pub(crate) fn peer_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001))
}

/// The fake peer's SWIM identity.
pub(crate) fn peer_member() -> Member {
    Member {
        node: NodeId::new(PEER, 1),
        addr: peer_addr(),
        bump: 0,
    }
}

/// The node under test's SWIM identity.
pub(crate) fn node_member() -> Member {
    Member {
        node: NodeId::new("n0", 1),
        addr: node_addr(),
        bump: 0,
    }
}

/// A node "n0" with three registrations of its own (so digests get real answers) that knows
/// the fake peer as a live member (it received the peer's announce).
pub(crate) fn fixture(now: Instant) -> Node {
    let mut node = Node::new(
        NodeOptions {
            id: node_member().node,
            addr: node_addr(),
            seeds: vec![peer_addr()],
            rng_seed: 7,
            wall_ms_at_start: 1_700_000_000_000,
        },
        Config::local(),
        Resolver::keep_oldest(),
        now,
    );
    for name in ["a", "b", "c"] {
        let pid = node.spawn_pid();
        node.register(now, name, &pid, Bytes::from_static(b"m"))
            .expect("a fresh node registers");
    }
    let pid = node.spawn_pid();
    node.join(now, "g", &pid, Bytes::new()).expect("joins");
    let hello = swim_packet(&peer_member(), &node_member(), Message::Announce);
    let why = node.handle_message(
        now,
        peer_addr(),
        Some(PEER),
        TrafficClass::Membership,
        &hello,
    );
    assert_eq!(why, None, "the fixture's announce is accepted");
    assert!(
        node.peers().any(|m| m.node.name.as_str() == PEER),
        "the fake peer is a live member"
    );
    drain(&mut node);
    node
}

/// An encoded `Datagram` carrying a SWIM packet with no updates.
pub(crate) fn swim_packet(src: &Member, dst: &Member, message: Message<Member>) -> Bytes {
    let mut buf = Vec::new();
    PostcardCodec
        .encode_header(
            &Header {
                src: src.clone(),
                src_incarnation: 0,
                dst: dst.clone(),
                message,
            },
            &mut buf,
        )
        .expect("a header encodes");
    encode(&Datagram::V1 { swim: buf.into() }).expect("a datagram encodes")
}

/// Drains every output; returns (transmits, events).
pub(crate) fn drain(node: &mut Node) -> (usize, usize) {
    let mut t = 0;
    while node.poll_transmit().is_some() {
        t += 1;
    }
    let mut e = 0;
    while node.poll_event().is_some() {
        e += 1;
    }
    (t, e)
}

/// State that must stay bounded by the input: registry entries (an entry takes at least six
/// encoded bytes), SWIM identities (a member takes at least four), outputs per input.
fn assert_bounded(node: &Node, input_len: usize, own: usize) {
    let entries = node.all_entries().count();
    assert!(
        entries <= own + input_len / 6,
        "{entries} entries from {input_len} bytes of input"
    );
    let members = node.swim_view().len();
    assert!(
        members <= 2 + input_len / 4,
        "{members} SWIM members from {input_len} bytes of input"
    );
}

/// Target `swim_datagram`: the bytes are a SWIM packet (foca's encoding); they are wrapped in
/// the wire's `Datagram` and handed to the node's datagram path (`handle_message`, class
/// Membership) exactly as a transport would, with the first byte choosing the authenticated
/// name (none, the fake peer's, another's). Then time runs for a few SWIM periods. Checks: no
/// panic, outputs and state bounded by the input.
pub(crate) fn swim_datagram(data: &[u8]) -> bool {
    let Some((&who, swim)) = data.split_first() else {
        return false;
    };
    let peer_name = match who % 3 {
        0 => None,
        1 => Some(PEER),
        _ => Some("n2"),
    };
    let start = Instant::now();
    let mut node = fixture(start);
    let Ok(bytes) = encode(&Datagram::V1 {
        swim: Bytes::copy_from_slice(swim),
    }) else {
        return false;
    };
    let why = node.handle_message(
        start,
        peer_addr(),
        peer_name,
        TrafficClass::Membership,
        &bytes,
    );
    let (t, e) = drain(&mut node);
    assert!(
        t <= 64 && e <= 64,
        "{t} transmits, {e} events for one packet"
    );
    let mut now = start;
    for _ in 0..8 {
        now += Duration::from_millis(100);
        node.handle_timeout(now);
        let (t, e) = drain(&mut node);
        assert!(
            t <= 256 && e <= 256,
            "{t} transmits, {e} events for one tick"
        );
    }
    assert_bounded(&node, data.len(), 4);
    // Decoded far enough to reach foca's payload handling.
    why.is_none_or(|w| {
        w != "undecodable datagram" && w != pidmesh_proto::reject::UNDECODABLE_SWIM_HEADER
    })
}

/// Target `node_messages`: a sequence of messages from one fake peer ("n1", a live member,
/// authenticated as such). Records: `[step][class][len: u16 LE][payload: len bytes]`; `step`
/// advances virtual time by `step` milliseconds (running due timers) before the message; the
/// class byte is taken modulo the four classes. A truncated last record is dropped. Checks: no
/// panic, bounded outputs per input, bounded state after the sequence, and every entry the
/// node holds belongs to itself or to the fake peer (nobody else can speak).
pub(crate) fn node_messages(data: &[u8]) -> bool {
    let start = Instant::now();
    let mut node = fixture(start);
    let mut now = start;
    let mut rest = data;
    let mut decoded = false;
    let mut records = 0usize;
    while rest.len() >= 4 {
        let step = rest[0];
        let class = TrafficClass::ALL[usize::from(rest[1]) % TrafficClass::ALL.len()];
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        rest = &rest[4..];
        let len = len.min(rest.len());
        let (payload, tail) = rest.split_at(len);
        rest = tail;
        records += 1;
        if step > 0 {
            now += Duration::from_millis(u64::from(step));
            node.handle_timeout(now);
            let (t, e) = drain(&mut node);
            assert!(
                t <= 256 && e <= 256,
                "{t} transmits, {e} events for one tick"
            );
        }
        let why = node.handle_message(now, peer_addr(), Some(PEER), class, payload);
        decoded |= why.is_none_or(|w| !w.starts_with("undecodable"));
        let (t, e) = drain(&mut node);
        assert!(
            t <= 64 + node.all_entries().count() && e <= 64 + node.all_entries().count(),
            "{t} transmits, {e} events for one message"
        );
    }
    assert_bounded(&node, data.len(), 4);
    for entry in node.all_entries() {
        let owner = entry.pid.node.name.as_str();
        assert!(
            owner == "n0" || owner == PEER,
            "an entry of {owner} arrived from {PEER}"
        );
    }
    let _ = records;
    decoded
}
