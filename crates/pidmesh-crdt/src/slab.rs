//! A slab: values addressed by small `u32` ids, with free-slot reuse, stored in chunks that never
//! move.
//!
//! The values live in fixed-size chunks (about [`CHUNK_BYTES`] each): growing appends a chunk and
//! never copies what is stored (a `Vec` that doubles, or grows by a fraction, reallocates and
//! copies the whole slab each time, and leaves the old blocks as holes in the allocator's heap).
//! Only the first chunk grows gradually (by an eighth), up to the full size, so a small slab
//! stays small.
//! An id is its chunk's number in the high bits and the place in the chunk in the low bits.

/// The target size in bytes of one chunk.
pub(crate) const CHUNK_BYTES: usize = 32 * 1024;

/// Values stored at stable `u32` ids. Freed ids are reused before the storage grows.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    /// Every chunk but the last is full (holds `Self::CHUNK` places, used or free).
    chunks: Vec<Vec<Option<T>>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Bits of an id that address a place in a chunk: a chunk of `2^CHUNK_BITS` places takes
    /// at most [`CHUNK_BYTES`] (at least 16 places whatever the value's size).
    pub(crate) const CHUNK_BITS: u32 = {
        let size = size_of::<Option<T>>();
        let fit = match CHUNK_BYTES.checked_div(size) {
            Some(fit) => fit,
            None => CHUNK_BYTES,
        };
        // The largest power of two not above `fit` (`fit` < 32 gives the minimum anyway).
        if fit < 32 {
            4
        } else {
            usize::BITS - 1 - fit.leading_zeros()
        }
    };
    /// Places per chunk.
    pub(crate) const CHUNK: usize = 1 << Self::CHUNK_BITS;
    const MASK: u32 = (1 << Self::CHUNK_BITS) - 1;

    fn split(id: u32) -> (usize, usize) {
        (
            (id >> Self::CHUNK_BITS) as usize,
            (id & Self::MASK) as usize,
        )
    }

    /// Stores `value`; returns its id.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if let Some(id) = self.free.pop() {
            let (c, i) = Self::split(id);
            if let Some(place) = self.chunks.get_mut(c).and_then(|ch| ch.get_mut(i)) {
                *place = Some(value);
                return id;
            }
        }
        let full = self.chunks.last().is_none_or(|ch| ch.len() == Self::CHUNK);
        if full {
            // The first chunk starts small and grows; later ones are allocated whole, once.
            let cap = if self.chunks.is_empty() {
                16
            } else {
                Self::CHUNK
            };
            self.chunks.push(Vec::with_capacity(cap));
        }
        let c = self.chunks.len() - 1;
        let Some(chunk) = self.chunks.last_mut() else {
            unreachable!("a chunk was just ensured")
        };
        if chunk.len() == chunk.capacity() {
            // By an eighth (at least 16 places): at most ~12 % of a small slab is slack.
            let grown = (chunk.capacity() + (chunk.capacity() / 8).max(16)).min(Self::CHUNK);
            chunk.reserve_exact(grown - chunk.len());
        }
        let id = ((c as u32) << Self::CHUNK_BITS) | chunk.len() as u32;
        chunk.push(Some(value));
        id
    }

    /// Takes the value at `id` out, freeing the id.
    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.place_mut(id)?.take()?;
        self.free.push(id);
        Some(value)
    }

    fn place_mut(&mut self, id: u32) -> Option<&mut Option<T>> {
        let (c, i) = Self::split(id);
        self.chunks.get_mut(c)?.get_mut(i)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        let (c, i) = Self::split(id);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.place_mut(id)?.as_mut()
    }

    /// Iterates the live `(id, value)` pairs by ascending id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks.iter().enumerate().flat_map(|(c, ch)| {
            ch.iter().enumerate().filter_map(move |(i, v)| {
                Some((((c as u32) << Self::CHUNK_BITS) | i as u32, v.as_ref()?))
            })
        })
    }

    /// Places allocated (live, free or spare), for tests of the growth policy.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn chunk_size_follows_the_value_size() {
        assert_eq!(Slab::<u64>::CHUNK, 2048); // Option<u64> is 16 B
        assert_eq!(Slab::<[u8; 100]>::CHUNK, 256); // 101 B: 324 fit, a power of two below
        assert_eq!(Slab::<[u8; 100_000]>::CHUNK, 16); // never fewer than 16
        assert!(Slab::<[u64; 13]>::CHUNK * size_of::<Option<[u64; 13]>>() <= CHUNK_BYTES);
    }

    #[test]
    fn grows_across_chunk_boundaries_without_moving_values() {
        let mut s = Slab::<u64>::default();
        let n = 3 * Slab::<u64>::CHUNK + 5;
        let first: *const u64 = {
            s.insert(0);
            // Fill the first chunk, then note where its first value lives.
            for i in 1..Slab::<u64>::CHUNK as u64 {
                assert_eq!(s.insert(i), i as u32);
            }
            s.get(0).expect("the first value is stored")
        };
        for i in Slab::<u64>::CHUNK as u64..n as u64 {
            assert_eq!(s.insert(i), i as u32, "ids are handed out densely");
        }
        // Later chunks were added without moving the first one.
        assert!(std::ptr::eq(
            first,
            s.get(0).expect("the first value is stored")
        ));
        for i in 0..n as u32 {
            assert_eq!(s.get(i), Some(&u64::from(i)));
        }
        assert_eq!(s.get(n as u32), None);
        // Full chunks plus one whole chunk being filled: no other slack.
        assert_eq!(s.capacity(), 4 * Slab::<u64>::CHUNK);
        let ids: Vec<u32> = s.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, (0..n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn small_slab_stays_small() {
        let mut s = Slab::<u64>::default();
        for i in 0..5 {
            s.insert(i);
        }
        assert_eq!(s.capacity(), 16);
    }

    #[test]
    fn removed_ids_are_reused_before_growing() {
        let mut s = Slab::<u64>::default();
        let chunk = Slab::<u64>::CHUNK as u32;
        for i in 0..chunk + 10 {
            s.insert(u64::from(i));
        }
        let cap = s.capacity();
        assert_eq!(s.remove(3), Some(3));
        assert_eq!(s.remove(chunk + 2), Some(u64::from(chunk + 2)));
        assert_eq!(s.remove(3), None, "a freed id holds nothing");
        assert_eq!(s.get(3), None);
        let a = s.insert(100);
        let b = s.insert(200);
        let mut reused = [a, b];
        reused.sort_unstable();
        assert_eq!(reused, [3, chunk + 2]);
        assert_eq!(s.capacity(), cap);
        assert_eq!(s.insert(300), chunk + 10, "then the slab grows");
        assert_eq!(s.get_mut(a).map(|v| std::mem::replace(v, 1)), Some(100));
        assert_eq!(s.get(a), Some(&1));
    }

    proptest! {
        #[test]
        fn matches_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..40), 0..400)) {
            // Large values make small chunks (16 places), so a few hundred operations cross chunks.
            let mut s = Slab::<[u8; 2048]>::default();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            let mut tag = 0u32;
            for (ins, pick) in ops {
                if ins || model.is_empty() {
                    tag += 1;
                    let mut v = [0u8; 2048];
                    v[..4].copy_from_slice(&tag.to_le_bytes());
                    let id = s.insert(v);
                    prop_assert!(model.insert(id, tag).is_none(), "id {} handed out twice", id);
                } else {
                    let id = *model.keys().nth(pick as usize % model.len()).expect("the model is not empty");
                    let v = s.remove(id).expect("a live id holds its value");
                    prop_assert_eq!(u32::from_le_bytes([v[0], v[1], v[2], v[3]]), model.remove(&id).expect("the model holds the id"));
                }
                let live: Vec<(u32, u32)> = s
                    .iter()
                    .map(|(id, v)| (id, u32::from_le_bytes([v[0], v[1], v[2], v[3]])))
                    .collect();
                prop_assert_eq!(live, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            }
        }
    }
}
