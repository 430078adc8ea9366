//! A compact ordered map from one actor's sequence numbers to `u32` ids.

use std::collections::BTreeMap;

/// Sequence numbers are grouped in blocks of 64 consecutive numbers: a block keeps a bitmap of
/// the numbers present and their ids in ascending order. An actor issues its numbers without
/// gaps, so its live entries fill blocks densely and cost ~4–5 bytes each instead of the ~24 of a
/// `BTreeMap<u64, u32>`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqIndex {
    blocks: BTreeMap<u64, Block>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Block {
    bits: u64,
    /// One id per set bit, in bit order.
    ids: Vec<u32>,
}

fn split(seq: u64) -> (u64, u32) {
    (seq >> 6, (seq & 63) as u32)
}

impl Block {
    /// An empty block with room for all its 64 ids.
    fn fresh() -> Self {
        Self {
            bits: 0,
            ids: Vec::with_capacity(64),
        }
    }

    fn rank(&self, bit: u32) -> usize {
        (self.bits & ((1u64 << bit) - 1)).count_ones() as usize
    }

    fn iter(&self, hi: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        let mut bits = self.bits;
        let mut i = 0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            let id = self.ids[i];
            i += 1;
            Some(((hi << 6) | u64::from(bit), id))
        })
    }
}

impl SeqIndex {
    /// The number of sequence numbers present.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block `hi`; the highest block (where an actor's new numbers land) is found without a
    /// search.
    fn block(&self, hi: u64) -> Option<&Block> {
        match self.blocks.last_key_value() {
            Some((&last, b)) if last == hi => Some(b),
            Some((&last, _)) if last < hi => None,
            _ => self.blocks.get(&hi),
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<u32> {
        let (hi, bit) = split(seq);
        let block = self.block(hi)?;
        (block.bits & (1 << bit) != 0).then(|| block.ids[block.rank(bit)])
    }

    /// Maps `seq` to `id`; returns the id it replaced.
    pub(crate) fn insert(&mut self, seq: u64, id: u32) -> Option<u32> {
        let (hi, bit) = split(seq);
        // An actor's next numbers land in the highest block: found without a search.
        let block = match self.blocks.last_entry() {
            Some(last) if *last.key() == hi => last.into_mut(),
            // A new highest block: the actor's next numbers fill it in order, so it gets room
            // for all 64 at once instead of regrowing five times on the way.
            Some(last) if *last.key() < hi => self.blocks.entry(hi).or_insert_with(Block::fresh),
            None => self.blocks.entry(hi).or_insert_with(Block::fresh),
            _ => self.blocks.entry(hi).or_default(),
        };
        let at = block.rank(bit);
        if block.bits & (1 << bit) != 0 {
            return Some(std::mem::replace(&mut block.ids[at], id));
        }
        block.bits |= 1 << bit;
        block.ids.insert(at, id);
        self.len += 1;
        None
    }

    /// Removes `seq`; returns its id.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<u32> {
        let (hi, bit) = split(seq);
        let block = self.blocks.get_mut(&hi)?;
        if block.bits & (1 << bit) == 0 {
            return None;
        }
        let id = block.ids.remove(block.rank(bit));
        block.bits &= !(1 << bit);
        if block.bits == 0 {
            self.blocks.remove(&hi);
        } else if block.ids.capacity() > 2 * block.ids.len() + 4 {
            block.ids.shrink_to_fit();
        }
        self.len -= 1;
        Some(id)
    }

    /// Iterates `(seq, id)` with `start <= seq <= end`, ascending.
    pub(crate) fn range(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        let (lo, hi) = (start >> 6, end >> 6);
        let blocks = (start <= end).then(|| self.blocks.range(lo..=hi));
        blocks
            .into_iter()
            .flatten()
            .flat_map(|(&h, b)| b.iter(h))
            .filter(move |&(s, _)| start <= s && s <= end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u64..300, any::<u32>()), 0..200),
                            a in 0u64..320, b in 0u64..320) {
            let mut idx = SeqIndex::default();
            let mut model = BTreeMap::new();
            for (ins, seq, id) in ops {
                if ins {
                    prop_assert_eq!(idx.insert(seq, id), model.insert(seq, id));
                } else {
                    prop_assert_eq!(idx.remove(seq), model.remove(&seq));
                }
                prop_assert_eq!(idx.len(), model.len());
            }
            for s in 0..320 {
                prop_assert_eq!(idx.get(s), model.get(&s).copied());
            }
            let got: Vec<_> = idx.range(a, b).collect();
            let want: Vec<_> = if a <= b { model.range(a..=b).map(|(k, v)| (*k, *v)).collect() } else { Vec::new() };
            prop_assert_eq!(got, want);
        }
    }
}
