//! A slab: values addressed by small `u32` ids, with free-slot reuse, stored in chunks that never
//! move.
//!
//! The values live in chunks that are allocated once at their final size and never grow: adding
//! values appends a chunk and never copies what is stored. (A `Vec` that doubles, or grows by a
//! fraction, reallocates and copies the whole slab each time and leaves the old blocks as holes in
//! the allocator's heap; for a value aligned above 16 bytes the system allocator cannot even grow
//! a block in place, so every step is a new allocation, a copy and a free.)
//!
//! Full chunks hold [`Slab::CHUNK`] places (about [`CHUNK_BYTES`]). So that a slab of any size
//! carries little spare room, the first [`SUB`] full chunks' worth of ids is spread over smaller
//! segments instead: [`SUB`] segments of 16 places up to `16 * SUB` places, then [`SUB`] segments
//! per doubling (places `[2^b, 2^(b+1))` in segments of `2^b / SUB`), up to segments of half a
//! chunk; full chunks follow. With `SUB` = 4 a slab's spare places are fewer than 16, or at most
//! a fifth of its capacity.
//!
//! Ids are handed out densely, so an id maps to its segment and place by arithmetic alone, without
//! a branch: a leading-zero count, a minimum, shifts and a mask.

/// The target size in bytes of one full chunk.
pub(crate) const CHUNK_BYTES: usize = 32 * 1024;

/// Log2 of [`SUB`].
const SUB_BITS: u32 = 2;
/// Segments per doubling of the ids below `SUB` full chunks.
const SUB: usize = 1 << SUB_BITS;
/// Log2 of the smallest segment's places.
const MIN_BITS: u32 = 4;

/// Values stored at stable `u32` ids. Freed ids are reused before the storage grows.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    /// The segments, then the full chunks. Every one but the last is full (all its places are
    /// used or free); each is allocated at its final size and never pushed past it.
    chunks: Vec<Vec<Option<T>>>,
    free: Vec<u32>,
    /// The next id never handed out: the number of places in use or free.
    next: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
            next: 0,
        }
    }
}

impl<T: Clone> Clone for Slab<T> {
    /// A copy whose segments have their full size too (a cloned `Vec` would have only its
    /// length, and the last segment would then grow by reallocation).
    fn clone(&self) -> Self {
        let chunks = self
            .chunks
            .iter()
            .enumerate()
            .map(|(seg, chunk)| {
                let mut copy = Vec::with_capacity(Self::places(seg));
                copy.extend_from_slice(chunk);
                copy
            })
            .collect();
        Self {
            chunks,
            free: self.free.clone(),
            next: self.next,
        }
    }
}

impl<T> Slab<T> {
    /// Bits of an id that address a place in a full chunk: a chunk of `2^CHUNK_BITS` places takes
    /// at most [`CHUNK_BYTES`] (at least 16 places whatever the value's size).
    pub(crate) const CHUNK_BITS: u32 = {
        let size = size_of::<Option<T>>();
        let fit = match CHUNK_BYTES.checked_div(size) {
            Some(fit) => fit,
            None => CHUNK_BYTES,
        };
        // The largest power of two not above `fit` (`fit` < 32 gives the minimum anyway).
        if fit < 32 {
            MIN_BITS
        } else {
            usize::BITS - 1 - fit.leading_zeros()
        }
    };
    /// Places per full chunk.
    pub(crate) const CHUNK: usize = 1 << Self::CHUNK_BITS;
    /// Ids below this one are in segments of 16 places.
    const LOW: u32 = 1 << (MIN_BITS + SUB_BITS);
    /// Ids below `2^SEGMENTED_BITS` (`SUB` full chunks' worth) are in segments.
    const SEGMENTED_BITS: u32 = Self::CHUNK_BITS + SUB_BITS;
    /// Segments before the first full chunk: `SUB` of 16 places, then `SUB` per doubling.
    const SEGMENTS: usize = ((Self::CHUNK_BITS - MIN_BITS + 1) as usize) << SUB_BITS;

    /// The segment or chunk holding `id`, and the place in it.
    ///
    /// One formula, without branches: `id` in `[2^b, 2^(b+1))` is in a segment of
    /// `2^(b - SUB_BITS)` places, with `b` at least `MIN_BITS + SUB_BITS` (the segments of 16)
    /// and at most `SEGMENTED_BITS` (the full chunks: `SUB` of them per doubling from there on
    /// are exactly the chunks that follow, so the same arithmetic numbers them).
    #[inline]
    fn split(id: u32) -> (usize, usize) {
        let b = (u32::BITS - 1 - (id | Self::LOW).leading_zeros()).min(Self::SEGMENTED_BITS);
        let shift = b - SUB_BITS;
        let seg = (((b - MIN_BITS - SUB_BITS) as usize) << SUB_BITS) + (id >> shift) as usize;
        (seg, (id & ((1 << shift) - 1)) as usize)
    }

    /// Places in segment or chunk `seg`.
    fn places(seg: usize) -> usize {
        if seg >= Self::SEGMENTS {
            Self::CHUNK
        } else if seg < SUB {
            1 << MIN_BITS
        } else {
            1 << ((seg >> SUB_BITS) + MIN_BITS as usize - 1)
        }
    }

    /// Stores `value`; returns its id.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if let Some(id) = self.free.pop()
            && let Some(place) = self.place_mut(id)
        {
            *place = Some(value);
            return id;
        }
        let id = self.next;
        let (seg, _) = Self::split(id);
        if seg == self.chunks.len() {
            // Allocated once at its final size: pushing below never reallocates.
            self.chunks.push(Vec::with_capacity(Self::places(seg)));
        }
        let Some(chunk) = self.chunks.last_mut() else {
            unreachable!("the segment of the next id was just ensured")
        };
        debug_assert!(chunk.len() < Self::places(seg), "a segment never grows");
        chunk.push(Some(value));
        self.next += 1;
        id
    }

    /// Takes the value at `id` out, freeing the id.
    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.place_mut(id)?.take()?;
        self.free.push(id);
        Some(value)
    }

    #[inline]
    fn place_mut(&mut self, id: u32) -> Option<&mut Option<T>> {
        let (c, i) = Self::split(id);
        self.chunks.get_mut(c)?.get_mut(i)
    }

    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        let (c, i) = Self::split(id);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.place_mut(id)?.as_mut()
    }

    /// Iterates the live `(id, value)` pairs by ascending id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        // Ids are dense and every segment but the last is full: the n-th place has id n.
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(id, v)| Some((id as u32, v.as_ref()?)))
    }

    /// Places allocated (live, free or spare), for tests of the growth policy.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
#[path = "slab_tests.rs"]
mod tests;
