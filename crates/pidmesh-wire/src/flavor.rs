//! The output buffer the encoder writes into.

use postcard::ser_flavors::Flavor;

/// A byte vector for postcard's serializer that starts with a chosen capacity.
///
/// postcard's own vector output starts empty and grows by doubling, copying what it holds each
/// time; a delta batch of a few hundred KiB regrows about twenty times. Sized from a close
/// estimate, the buffer is allocated once. The bytes written are the serializer's, unchanged.
pub(crate) struct VecOut {
    vec: Vec<u8>,
}

impl VecOut {
    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            vec: Vec::with_capacity(capacity),
        }
    }
}

impl Flavor for VecOut {
    type Output = Vec<u8>;

    /// Many writes are a one-byte varint (a length, a small number): pushed, which costs less
    /// than a call to the C library's `memcpy` (longer writes gain nothing from a copy by
    /// hand: measured with `register_cost` under callgrind).
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if let [b] = data {
            self.vec.push(*b);
        } else {
            self.vec.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.vec.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.vec)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{DeltaBatch, DeltaMsg, Hlc, Key, NodeId, OriginDelta, Value, WireEntry};

    #[test]
    fn sized_encoding_is_postcards_whatever_the_hint() {
        let entries = (1..300u64)
            .map(|seq| WireEntry {
                seq,
                key: Key::name("x".repeat(seq as usize % 70 + 1)),
                value: Value {
                    pid: seq * 1_000_003,
                    meta: Bytes::from(vec![7u8; seq as usize % 40]),
                    at: Hlc {
                        wall_ms: 1_790_000_000_000 + seq,
                        logical: seq as u32 % 3,
                    },
                },
            })
            .collect();
        let msg = DeltaMsg::V1(DeltaBatch {
            origin: NodeId::new("node-0", 9),
            delta: OriginDelta {
                seen: vec![(1, 299)],
                adds: entries,
                released: Vec::new(),
            },
        });
        let expected = postcard::to_stdvec(&msg).expect("encodes");
        for hint in [0, 1, 100, expected.len() - 1, expected.len(), 1 << 30] {
            let got = crate::encode_sized(&msg, hint).expect("encodes");
            assert_eq!(&got[..], &expected[..], "hint {hint}");
        }
        assert_eq!(&crate::encode(&msg).expect("encodes")[..], &expected[..]);
    }
}
