//! Validation of a delta batch a peer sent: a sequence number used twice is refused, whatever
//! the order of the entries and whichever list (adds, released) holds them.

use bytes::Bytes;
use pidmesh_wire::{Hlc, Key, OriginDelta, Validate, Value, WireEntry};

fn entry(seq: u64) -> WireEntry {
    WireEntry {
        seq,
        key: Key::name(format!("n{seq}")),
        value: Value {
            pid: 1,
            meta: Bytes::new(),
            at: Hlc {
                wall_ms: 1,
                logical: 0,
            },
        },
    }
}

#[test]
fn a_sequence_number_used_twice_is_refused_in_any_order() {
    let delta = |adds: &[u64], released: &[u64]| OriginDelta {
        seen: vec![(1, 10)],
        adds: adds.iter().map(|&s| entry(s)).collect(),
        released: released.iter().map(|&s| entry(s)).collect(),
    };
    for (adds, released) in [
        (&[1u64, 2, 3][..], &[][..]),
        (&[3, 1, 2][..], &[][..]),
        (&[1, 3][..], &[2][..]),
        (&[][..], &[2, 1][..]),
    ] {
        assert!(
            delta(adds, released).validate().is_ok(),
            "{adds:?} {released:?}"
        );
    }
    for (adds, released) in [
        (&[1u64, 2, 2][..], &[][..]),
        (&[2, 1, 2][..], &[][..]),
        (&[1, 3][..], &[3][..]),
        (&[][..], &[4, 4][..]),
    ] {
        assert!(
            delta(adds, released).validate().is_err(),
            "{adds:?} {released:?}"
        );
    }
}
