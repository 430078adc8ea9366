//! The push-pull membership message (`SyncV1::Members`): golden bytes, and hostile input
//! rejected without a panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pidmesh_wire::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn record(name: &str, port: u16) -> MemberRecord {
    MemberRecord {
        node: NodeId::new(name, 7),
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port),
        bump: 1,
        incarnation: 2,
    }
}

fn list(members: Vec<MemberRecord>) -> SyncMsg {
    SyncMsg::V1(SyncV1::Members(MembersMsg::List {
        from: NodeId::new("a", 1),
        to: NodeId::new("b", 2),
        members,
        reply_wanted: true,
        last: true,
    }))
}

fn roundtrip(msg: &SyncMsg, golden: &str) {
    let bytes = encode(msg).expect("encodes");
    assert_eq!(hex(&bytes), golden, "wire v1 bytes changed for {msg:?}");
    assert_eq!(&decode::<SyncMsg>(&bytes).expect("decodes"), msg);
}

#[test]
fn members_list_v1() {
    roundtrip(
        &list(vec![record("n1", 7946)]),
        "00040001610101620201026e3107000a0000018a3e01020101",
    );
}

#[test]
fn members_busy_v1() {
    roundtrip(
        &SyncMsg::V1(SyncV1::Members(MembersMsg::Busy {
            from: NodeId::new("a", 1),
            to: NodeId::new("b", 2),
        })),
        "000401016101016202",
    );
}

#[test]
fn oversized_and_garbage_member_lists_are_rejected() {
    // One record over the per-message bound.
    let too_many = list(
        (0..=MAX_MEMBERS_PER_MSG)
            .map(|i| record(&format!("n{i}"), 1))
            .collect(),
    );
    let bytes = encode(&too_many).expect("encodes under the class limit");
    assert_eq!(
        decode::<SyncMsg>(&bytes),
        Err(DecodeError::Invalid("too many member records"))
    );
    // Exactly at the bound decodes.
    let full = list(
        (0..MAX_MEMBERS_PER_MSG)
            .map(|i| record(&format!("n{i}"), 1))
            .collect(),
    );
    assert!(decode::<SyncMsg>(&encode(&full).expect("encodes")).is_ok());
    // A member with an empty or control-character name.
    for bad in ["", "x\u{1}y"] {
        let bytes = encode(&list(vec![record(bad, 1)])).expect("encodes");
        assert_eq!(
            decode::<SyncMsg>(&bytes),
            Err(DecodeError::Invalid("node name"))
        );
    }
    // Every truncation of a valid message, and trailing bytes, are errors, never panics.
    let good = encode(&list(vec![record("n1", 1), record("n2", 2)])).expect("encodes");
    for cut in 0..good.len() {
        assert!(decode::<SyncMsg>(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut long = good.to_vec();
    long.push(0);
    assert!(matches!(
        decode::<SyncMsg>(&long),
        Err(DecodeError::TrailingBytes(1))
    ));
    // A length prefix claiming more records than the bytes hold.
    let mut lie = hex_to_bytes("00040001610101620201");
    lie.extend_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
    assert!(decode::<SyncMsg>(&lie).is_err());
}

fn hex_to_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
