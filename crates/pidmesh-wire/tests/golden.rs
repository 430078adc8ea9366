//! Golden byte vectors of wire version 1. If one of these changes, the wire format changed:
//! that needs a new version variant, never an edit of these bytes.

use bytes::Bytes;
use pidmesh_wire::*;

fn node(name: &str, inc: u64) -> NodeId {
    NodeId::new(name, inc)
}

fn sample_delta() -> OriginDelta {
    OriginDelta {
        seen: vec![(1, 3), (7, 7)],
        adds: vec![WireEntry {
            seq: 2,
            key: Key::name("billing"),
            value: Value {
                pid: 5,
                meta: Bytes::from_static(b"v1"),
                at: Hlc {
                    wall_ms: 1_700_000_000_000,
                    logical: 3,
                },
            },
        }],
        released: vec![WireEntry {
            seq: 3,
            key: Key::name("lost"),
            value: Value {
                pid: 6,
                meta: Bytes::new(),
                at: Hlc {
                    wall_ms: 1_700_000_000_001,
                    logical: 0,
                },
            },
        }],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check<M: WireMessage + PartialEq + std::fmt::Debug>(msg: M, golden: &str) {
    let bytes = encode(&msg).expect("encodes");
    assert_eq!(hex(&bytes), golden, "wire v1 bytes changed for {msg:?}");
    let back: M = decode(&bytes).expect("decodes");
    assert_eq!(back, msg);
}

#[test]
fn datagram_v1() {
    check(
        Datagram::V1 {
            swim: Bytes::from_static(&[1, 2, 3]),
        },
        "0003010203",
    );
}

#[test]
fn delta_v1() {
    check(
        DeltaMsg::V1(DeltaBatch {
            origin: node("api-1", 42),
            delta: sample_delta(),
        }),
        GOLDEN_DELTA,
    );
}

#[test]
fn sync_digest_v1() {
    check(
        SyncMsg::V1(SyncV1::Digest {
            from: node("a", 1),
            to: node("b", 2),
            have: vec![(1, 10)],
            own_max: 4,
            live_count: 3,
            live_hash: 0xdead_beef,
        }),
        GOLDEN_DIGEST,
    );
}

#[test]
fn sync_chunk_v1() {
    check(
        SyncMsg::V1(SyncV1::Chunk {
            from: node("a", 1),
            to: node("b", 2),
            delta: sample_delta(),
            last: true,
        }),
        GOLDEN_CHUNK,
    );
}

#[test]
fn mail_v1() {
    check(
        MailMsg::V1 {
            from: node("a", 1),
            to: Pid {
                node: node("b", 2),
                local: 9,
            },
            body: Bytes::from_static(b"hi"),
        },
        GOLDEN_MAIL,
    );
}

/// Mail version 2 (sender pid, request/reply, exits, leave); version 1 above still decodes.
#[test]
fn mail_v2() {
    let to = Pid {
        node: node("b", 2),
        local: 9,
    };
    check(
        MailMsg::V2(MailV2::Mail {
            from: node("a", 1),
            sender: Some(4),
            to: to.clone(),
            kind: MailKind::Cast,
            body: Bytes::from_static(b"hi"),
        }),
        GOLDEN_MAIL_V2_CAST,
    );
    check(
        MailMsg::V2(MailV2::Mail {
            from: node("a", 1),
            sender: None,
            to: to.clone(),
            kind: MailKind::Request { id: 300 },
            body: Bytes::from_static(b"q"),
        }),
        GOLDEN_MAIL_V2_REQUEST,
    );
    check(
        MailMsg::V2(MailV2::Mail {
            from: node("b", 2),
            sender: Some(9),
            to: to.clone(),
            kind: MailKind::Reject {
                id: 300,
                reason: RejectReason::ReplyTooLarge,
            },
            body: Bytes::new(),
        }),
        GOLDEN_MAIL_V2_REJECT,
    );
    check(
        MailMsg::V2(MailV2::Exited {
            from: node("a", 1),
            pids: vec![1, 200],
        }),
        GOLDEN_MAIL_V2_EXITED,
    );
    check(
        MailMsg::V2(MailV2::Leaving { from: node("a", 1) }),
        GOLDEN_MAIL_V2_LEAVING,
    );
}

#[test]
fn sync_claims_v1() {
    let claim = OriginDelta {
        seen: vec![(4, 4)],
        adds: vec![WireEntry {
            seq: 4,
            key: Key::name("sched"),
            value: Value {
                pid: 2,
                meta: Bytes::new(),
                at: Hlc {
                    wall_ms: 1_700_000_000_000,
                    logical: 0,
                },
            },
        }],
        released: Vec::new(),
    };
    check(
        SyncMsg::V1(SyncV1::ClaimCheck {
            from: node("a", 1),
            to: node("b", 2),
            name: "sched".into(),
            claim,
            round: 7,
        }),
        GOLDEN_CLAIM_CHECK,
    );
    check(
        SyncMsg::V1(SyncV1::ClaimAck {
            from: node("b", 2),
            to: node("a", 1),
            name: "sched".into(),
            claim_seq: 4,
            round: 7,
            known: 3,
            holders: vec![(node("a", 1), 4)],
        }),
        GOLDEN_CLAIM_ACK,
    );
}

const GOLDEN_CLAIM_CHECK: &str =
    "0002016101016202057363686564010404010400057363686564020080d095ffbc31000007";
const GOLDEN_CLAIM_ACK: &str = "00030162020161010573636865640407030101610104";
const GOLDEN_MAIL: &str = "0001610101620209026869";
const GOLDEN_MAIL_V2_CAST: &str = "010001610101040162020900026869";
const GOLDEN_MAIL_V2_REQUEST: &str = "0100016101000162020901ac020171";
const GOLDEN_MAIL_V2_REJECT: &str = "010001620201090162020904ac020200";
const GOLDEN_MAIL_V2_EXITED: &str = "01010161010201c801";
const GOLDEN_MAIL_V2_LEAVING: &str = "0102016101";
const GOLDEN_DELTA: &str = "00056170692d312a02010307070102000762696c6c696e670502763180d095ffbc3103010300046c6f7374060081d095ffbc3100";
const GOLDEN_DIGEST: &str = "000001610101620201010a0403effdb6f50d";
const GOLDEN_CHUNK: &str = "000101610101620202010307070102000762696c6c696e670502763180d095ffbc3103010300046c6f7374060081d095ffbc310001";

#[test]
fn hostile_input_is_rejected_without_panic() {
    // Trailing bytes.
    let mut b = encode(&Datagram::V1 {
        swim: Bytes::from_static(&[9]),
    })
    .expect("encodes")
    .to_vec();
    b.push(0);
    assert_eq!(decode::<Datagram>(&b), Err(DecodeError::TrailingBytes(1)));
    // Over the class limit.
    let big = vec![0u8; MAX_DATAGRAM_LEN + 1];
    assert!(matches!(
        decode::<Datagram>(&big),
        Err(DecodeError::TooLarge { .. })
    ));
    // Unknown version tag.
    assert!(matches!(
        decode::<DeltaMsg>(&[7, 0, 0]),
        Err(DecodeError::Malformed(_))
    ));
    // A length prefix that claims far more than is there allocates nothing and fails.
    assert!(matches!(
        decode::<Datagram>(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(DecodeError::Malformed(_))
    ));
    // Semantically invalid: an entry outside the delta's ranges, an empty name, range 0.
    let mut d = sample_delta();
    d.adds[0].seq = 5;
    let bytes = encode(&DeltaMsg::V1(DeltaBatch {
        origin: node("a", 1),
        delta: d,
    }))
    .expect("encodes");
    assert!(matches!(
        decode::<DeltaMsg>(&bytes),
        Err(DecodeError::Invalid(_))
    ));
    let mut d = sample_delta();
    d.adds[0].key = Key::name("");
    let bytes = encode(&DeltaMsg::V1(DeltaBatch {
        origin: node("a", 1),
        delta: d,
    }))
    .expect("encodes");
    assert!(matches!(
        decode::<DeltaMsg>(&bytes),
        Err(DecodeError::Invalid(_))
    ));
    let mut d = sample_delta();
    d.seen.push((0, 0));
    let bytes = encode(&DeltaMsg::V1(DeltaBatch {
        origin: node("a", 1),
        delta: d,
    }))
    .expect("encodes");
    assert!(matches!(
        decode::<DeltaMsg>(&bytes),
        Err(DecodeError::Invalid(_))
    ));
    // Every prefix of a valid message fails cleanly.
    let full = encode(&SyncMsg::V1(SyncV1::Chunk {
        from: node("a", 1),
        to: node("b", 2),
        delta: sample_delta(),
        last: false,
    }))
    .expect("encodes");
    for n in 0..full.len() {
        assert!(
            decode::<SyncMsg>(&full[..n]).is_err(),
            "prefix of {n} bytes decoded"
        );
    }
}

#[test]
fn bulk_registration_costs_few_bytes_on_the_wire() {
    // 1,000 registrations of ~16-byte names in one batch: the amortized size per entry.
    let adds: Vec<WireEntry> = (1..=1000u64)
        .map(|i| WireEntry {
            seq: 100_000 + i,
            key: Key::name(format!("service-{i:08}")),
            value: Value {
                pid: i,
                meta: Bytes::new(),
                at: Hlc {
                    wall_ms: 1_790_000_000_000 + i / 10,
                    logical: 0,
                },
            },
        })
        .collect();
    let msg = DeltaMsg::V1(DeltaBatch {
        origin: node("api-1", 1_790_000_000_000),
        delta: OriginDelta {
            seen: vec![(100_001, 101_000)],
            adds,
            released: Vec::new(),
        },
    });
    let len = encode(&msg).expect("encodes").len();
    let per = len as f64 / 1000.0;
    println!("bulk delta: {len} bytes for 1000 registrations = {per:.1} B/registration");
    assert!(per < 40.0, "{per} bytes per registration");
}

/// A key of a named scope travels as a plain string (`\x1f scope \x1f name`): no new field, so
/// the default scope's bytes above are unchanged. Worked out by hand from postcard's rules.
#[test]
fn delta_v1_scoped_key() {
    let key = Key {
        kind: KeyKind::Name,
        name: scoped_name("jobs", "x").expect("valid"),
    };
    assert_eq!(key.scope(), Some("jobs"));
    assert_eq!(key.local_name(), "x");
    let golden = [
        "00",             // DeltaMsg::V1
        "016101",         // origin "a"#1
        "010101",         // seen [(1, 1)]
        "01",             // one add
        "01",             // seq 1
        "00",             // KeyKind::Name
        "07",             // name length 7
        "1f6a6f62731f78", // \x1f j o b s \x1f x
        "02",             // pid 2
        "00",             // empty metadata
        "0100",           // at 1 ms, logical 0
        "00",             // no releases
    ]
    .concat();
    check(
        DeltaMsg::V1(DeltaBatch {
            origin: node("a", 1),
            delta: OriginDelta {
                seen: vec![(1, 1)],
                adds: vec![WireEntry {
                    seq: 1,
                    key,
                    value: Value {
                        pid: 2,
                        meta: Bytes::new(),
                        at: Hlc {
                            wall_ms: 1,
                            logical: 0,
                        },
                    },
                }],
                released: Vec::new(),
            },
        }),
        &golden,
    );
}

/// Malformed scoped names are rejected by the decoder like any invalid name.
#[test]
fn malformed_scoped_names_are_rejected() {
    let bad = [
        "\u{1f}jobs",               // no separator
        "\u{1f}\u{1f}x",            // empty scope
        "\u{1f}jobs\u{1f}",         // empty name
        "\u{1f}jo\nbs\u{1f}x",      // control character in the scope
        "\u{1f}jobs\u{1f}a\u{1f}b", // control character in the name
    ];
    for name in bad {
        assert!(check_key_name(name).is_err(), "{name:?} accepted");
        let msg = DeltaMsg::V1(DeltaBatch {
            origin: node("a", 1),
            delta: OriginDelta {
                seen: vec![(1, 1)],
                adds: vec![WireEntry {
                    seq: 1,
                    key: Key::name(name),
                    value: Value {
                        pid: 2,
                        meta: Bytes::new(),
                        at: Hlc::default(),
                    },
                }],
                released: Vec::new(),
            },
        });
        let bytes = encode(&msg).expect("encodes");
        assert!(decode::<DeltaMsg>(&bytes).is_err(), "{name:?} decoded");
    }
    assert!(check_key_name("\u{1f}jobs\u{1f}x").is_ok());
    assert!(check_user_name("\u{1f}jobs\u{1f}x").is_err());
    assert!(scoped_name(&"s".repeat(MAX_SCOPE_LEN + 1), "x").is_err());
    assert!(scoped_name("jobs", &"n".repeat(MAX_NAME_LEN)).is_ok());
}

/// The catch-up messages (appended to version 1's `SyncV1`, so earlier variants keep their
/// bytes): survey, holdings, fetch and a relayed slice.
#[test]
fn sync_catch_up_v1() {
    check(
        SyncMsg::V1(SyncV1::CatchUpAsk {
            from: node("new", 9),
            to: node("a", 1),
        }),
        GOLDEN_CATCH_UP_ASK,
    );
    check(
        SyncMsg::V1(SyncV1::Holdings {
            from: node("a", 1),
            to: node("new", 9),
            rows: vec![HeldRow {
                origin: node("b", 2),
                upto: 70_000,
                live: 65_000,
            }],
        }),
        GOLDEN_HOLDINGS,
    );
    check(
        SyncMsg::V1(SyncV1::Fetch {
            from: node("new", 9),
            to: node("a", 1),
            origin: node("b", 2),
            start: 32_769,
            end: 65_536,
        }),
        GOLDEN_FETCH,
    );
    let mut slice = sample_delta();
    slice.released.clear();
    check(
        SyncMsg::V1(SyncV1::Slice {
            from: node("a", 1),
            to: node("new", 9),
            origin: node("b", 2),
            start: 1,
            delta: slice,
            last: true,
        }),
        GOLDEN_SLICE,
    );
}

const GOLDEN_CATCH_UP_ASK: &str = "0005036e657709016101";
const GOLDEN_HOLDINGS: &str = "0006016101036e65770901016202f0a204e8fb03";
const GOLDEN_FETCH: &str = "0007036e657709016101016202818002808004";
const GOLDEN_SLICE: &str =
    "0008016101036e6577090162020102010307070102000762696c6c696e670502763180d095ffbc31030001";

/// A catch-up message that breaks its rules is refused at decode.
#[test]
fn malformed_catch_up_messages_are_rejected() {
    let bad_fetch = SyncMsg::V1(SyncV1::Fetch {
        from: node("new", 9),
        to: node("a", 1),
        origin: node("b", 2),
        start: 10,
        end: 9,
    });
    let bytes = encode(&bad_fetch).expect("encodes");
    assert!(
        decode::<SyncMsg>(&bytes).is_err(),
        "an empty fetch range decoded"
    );
    let relayed_release = SyncMsg::V1(SyncV1::Slice {
        from: node("a", 1),
        to: node("new", 9),
        origin: node("b", 2),
        start: 1,
        delta: sample_delta(),
        last: true,
    });
    let bytes = encode(&relayed_release).expect("encodes");
    assert!(
        decode::<SyncMsg>(&bytes).is_err(),
        "a slice relaying another origin's releases decoded"
    );
}
