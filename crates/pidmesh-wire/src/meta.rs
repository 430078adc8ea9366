//! Decoding of an entry's metadata ([`crate::Value::meta`]).

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, SeqAccess, Visitor};

/// Decodes metadata as `bytes`' own `Deserialize` does (the same input, the same value), but
/// metadata that is empty (most registrations carry none) costs no copy: it is the empty
/// `Bytes` at once.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    d.deserialize_byte_buf(MetaVisitor)
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("byte array")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(if v.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(v)
        })
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
        self.visit_bytes(v.as_bytes())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(crate::MAX_META_LEN));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{Hlc, Value};

    /// The same bytes decode to the same value as `bytes`' own decoding gives, empty or not.
    #[test]
    fn metadata_decodes_as_bytes_does() {
        for meta in [&b""[..], b"x", b"some metadata", &[0u8, 255, 7, 0][..]] {
            let v = Value {
                pid: 42,
                meta: Bytes::copy_from_slice(meta),
                at: Hlc {
                    wall_ms: 1_790_000_000_123,
                    logical: 3,
                },
            };
            let wire = postcard::to_stdvec(&v).expect("encodes");
            let back: Value = postcard::from_bytes(&wire).expect("decodes");
            assert_eq!(back, v);
            let plain: Bytes =
                postcard::from_bytes(&postcard::to_stdvec(&v.meta).expect("encodes"))
                    .expect("decodes");
            assert_eq!(back.meta, plain);
        }
    }
}
