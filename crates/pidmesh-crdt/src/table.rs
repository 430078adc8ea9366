//! A hash table of `u32` ids whose probe unit is one 64-byte cache line.
//!
//! The store keeps its key records in a slab and indexes them by hash with this table: the table
//! holds only ids, and the caller says how to compare an id's key and how to hash it again
//! (both read the record). A group of [`SLOTS`] slots fills one line: a one-byte tag per slot
//! (eight bits of the hash; `0` marks an empty slot), an overflow count, and the ids. A lookup
//! reads its home group's line, compares the tags, and reads the ids from that same line, so it
//! makes one dependent access to the table (one page, one line) before the record; a table of
//! separate tag and id arrays makes two.
//!
//! Collisions probe further groups (triangular steps over a power-of-two number of groups,
//! which visit every group). A group's overflow count is the number of live ids whose probe
//! passed it full and went on: a lookup stops at the first group whose count is zero. Removal
//! empties the slot and takes one off the counts of the groups the id's probe passed, so the
//! table needs no tombstones and never rehashes because of removals.

/// Slots per group.
pub(crate) const SLOTS: usize = 12;
/// The tag of an empty slot.
const EMPTY: u8 = 0;

/// One cache line: tags, the overflow count, ids.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Group {
    tags: [u8; SLOTS],
    /// Live ids whose probe sequence passed this group (full) and went on.
    overflow: u32,
    ids: [u32; SLOTS],
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// A mask with bit 8·i + 7 set exactly where byte i of `x` is zero (no false positives).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & HI7).wrapping_add(HI7)) | x | HI7)
}

impl Group {
    /// A bit per slot (bit i for slot i) whose tag is `tag`.
    #[inline]
    fn matches(&self, tag: u8) -> u32 {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = self.tags;
        let lo = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
        // The four padding bytes are 0xff, never a tag we look for (0xff tags are mapped to
        // 0xfe, see `tag_of`); the result is masked to the slots anyway.
        let hi = u64::from(u32::from_le_bytes([i, j, k, l])) | 0xffff_ffff_0000_0000;
        matches_words(lo, hi, tag) & ((1 << SLOTS) - 1)
    }
}

/// The bytes of `lo` (bytes 0–7) and `hi` (bytes 8–15) equal to `tag`, as a bit mask.
#[inline]
fn matches_words(lo: u64, hi: u64, tag: u8) -> u32 {
    let splat = LO.wrapping_mul(u64::from(tag));
    let (lo, hi) = (zero_bytes(lo ^ splat), zero_bytes(hi ^ splat));
    if lo | hi == 0 {
        // The common case of a probe past a group: nothing to gather.
        return 0;
    }
    compress(lo) | (compress(hi) << 8)
}

/// Gathers bit 8·i + 7 of `m` into bit i.
#[inline]
fn compress(m: u64) -> u32 {
    // Each set bit is a byte's top bit; multiplying by this constant moves byte i's top bit to
    // bit 56 + i without carries between them.
    (((m >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56) as u32
}

/// The tag of `hash`: its top byte, never [`EMPTY`] and never `0xff` (the padding's byte).
#[inline]
fn tag_of(hash: u64) -> u8 {
    match (hash >> 56) as u8 {
        EMPTY => 1,
        0xff => 0xfe,
        t => t,
    }
}

/// Where [`Table::entry`] would put a new id: the first group of the probe with an empty slot
/// (how many groups the probe passed before it, and which slot), if the lookup's probe met one.
#[derive(Debug)]
pub(crate) struct Vacant {
    /// Group, groups passed before it, empty slot in it.
    at: Option<(usize, usize, usize)>,
}

/// The table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    groups: Vec<Group>,
    len: usize,
}

/// The groups a probe for `hash` visits, in order, over `n` groups (a power of two).
#[inline]
fn probe(hash: u64, n: usize) -> impl Iterator<Item = usize> {
    let mask = n.wrapping_sub(1);
    let mut pos = hash as usize & mask;
    let mut step = 0;
    std::iter::from_fn(move || {
        let here = pos;
        step += 1;
        pos = (pos + step) & mask;
        Some(here)
    })
    .take(n)
}

impl Table {
    /// Ids stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots the table can fill before it grows: seven eighths of its slots (as hashbrown's).
    fn capacity(&self) -> usize {
        self.groups.len() * SLOTS * 7 / 8
    }

    /// The id of `hash` for which `eq` holds, if any.
    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.probe_for::<false>(hash, eq).ok()
    }

    /// The id of `hash` for which `eq` holds, or where [`Table::insert_vacant`] would put a
    /// new id for `hash`.
    #[inline]
    pub(crate) fn entry(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Result<u32, Vacant> {
        self.probe_for::<true>(hash, eq)
    }

    /// The probe of [`Table::find`] and [`Table::entry`]; notes the first group with an empty
    /// slot if `VACANT`.
    #[inline]
    fn probe_for<const VACANT: bool>(
        &self,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Result<u32, Vacant> {
        let tag = tag_of(hash);
        let mask = self.groups.len().wrapping_sub(1);
        let mut pos = hash as usize & mask;
        let mut vacant = Vacant { at: None };
        // Triangular steps visit every group once in `len` steps; a lookup stops far earlier, at
        // the first group no probe went past.
        for step in 1..=self.groups.len() {
            let Some(group) = self.groups.get(pos) else {
                break;
            };
            let mut m = group.matches(tag);
            while m != 0 {
                let Some(&id) = group.ids.get(m.trailing_zeros() as usize) else {
                    break;
                };
                if eq(id) {
                    return Ok(id);
                }
                m &= m - 1;
            }
            if VACANT && vacant.at.is_none() {
                let free = group.matches(EMPTY);
                if free != 0 {
                    vacant.at = Some((pos, step - 1, free.trailing_zeros() as usize));
                }
            }
            if group.overflow == 0 {
                break;
            }
            pos = (pos + step) & mask;
        }
        Err(vacant)
    }

    /// Makes room for `additional` more ids without growing meanwhile; `rehash` gives an id's
    /// hash (it must be the hash the id was inserted with).
    pub(crate) fn reserve(&mut self, additional: usize, rehash: impl Fn(u32) -> u64) {
        let want = self.len.saturating_add(additional);
        if want <= self.capacity() {
            return;
        }
        // Groups so that `want` is at most seven eighths of the slots.
        let groups = want
            .saturating_mul(8)
            .div_ceil(7 * SLOTS)
            .max(1)
            .next_power_of_two();
        let old = std::mem::replace(&mut self.groups, vec![Group::default(); groups]);
        self.len = 0;
        for group in &old {
            for (i, &t) in group.tags.iter().enumerate() {
                if let (true, Some(&id)) = (t != EMPTY, group.ids.get(i)) {
                    self.place_tagged(rehash(id), t, id);
                }
            }
        }
    }

    /// Inserts `id` (which must not be in the table) under `hash`, growing if full.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, hash: u64, id: u32, rehash: impl Fn(u32) -> u64) {
        self.insert_vacant(Vacant { at: None }, hash, id, rehash);
    }

    /// Inserts `id` (which must not be in the table) under `hash` at the place `vacant` that
    /// [`Table::entry`] found for it (unchanged since), growing if full.
    #[inline]
    pub(crate) fn insert_vacant(
        &mut self,
        vacant: Vacant,
        hash: u64,
        id: u32,
        rehash: impl Fn(u32) -> u64,
    ) {
        if self.len >= self.capacity() {
            let grow = self.capacity().max(SLOTS / 2);
            self.reserve(grow, rehash);
            self.place(hash, id);
            return;
        }
        let Some((g, passed, slot)) = vacant.at else {
            self.place(hash, id);
            return;
        };
        let mask = self.groups.len() - 1;
        let mut pos = hash as usize & mask;
        for step in 1..=passed {
            if let Some(group) = self.groups.get_mut(pos) {
                group.overflow += 1;
            }
            pos = (pos + step) & mask;
        }
        debug_assert_eq!(pos, g, "the vacancy lies on the probe sequence");
        self.put(g, slot, tag_of(hash), id);
    }

    /// Fills the empty slot `i` of group `g` with `id` under `tag`.
    #[inline]
    fn put(&mut self, g: usize, i: usize, tag: u8, id: u32) {
        let Some(group) = self.groups.get_mut(g) else {
            return;
        };
        if let (Some(t), Some(slot)) = (group.tags.get_mut(i), group.ids.get_mut(i)) {
            *t = tag;
            *slot = id;
            self.len += 1;
        }
    }

    /// Puts `id` in the first group of its probe with an empty slot, counting the full groups
    /// it passes. The table has an empty slot.
    fn place(&mut self, hash: u64, id: u32) {
        self.place_tagged(hash, tag_of(hash), id);
    }

    /// [`Table::place`] with the tag of `hash` given.
    fn place_tagged(&mut self, hash: u64, tag: u8, id: u32) {
        let mask = self.groups.len().wrapping_sub(1);
        let mut pos = hash as usize & mask;
        for step in 1..=self.groups.len() {
            let Some(group) = self.groups.get_mut(pos) else {
                break;
            };
            let free = group.matches(EMPTY);
            if free != 0 {
                self.put(pos, free.trailing_zeros() as usize, tag, id);
                return;
            }
            group.overflow += 1;
            pos = (pos + step) & mask;
        }
        unreachable!("a table below its capacity has an empty slot")
    }

    /// Removes `id` (stored under `hash`); returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, id: u32) -> bool {
        let tag = tag_of(hash);
        let n = self.groups.len();
        let mut passed = 0;
        let mut found = None;
        for g in probe(hash, n) {
            let Some(group) = self.groups.get_mut(g) else {
                break;
            };
            let mut m = group.matches(tag);
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                if group.ids.get(i) == Some(&id) {
                    found = Some(i);
                    break;
                }
            }
            if let Some(i) = found {
                if let Some(t) = group.tags.get_mut(i) {
                    *t = EMPTY;
                }
                break;
            }
            if group.overflow == 0 {
                return false;
            }
            passed += 1;
        }
        if found.is_none() {
            return false;
        }
        for g in probe(hash, n).take(passed) {
            if let Some(group) = self.groups.get_mut(g) {
                group.overflow -= 1;
            }
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
impl Table {
    /// Checks the overflow counts against a recount from the stored ids (`hash` gives an id's
    /// hash) and that every id is found where a lookup would look.
    pub(crate) fn check(&self, hash: impl Fn(u32) -> u64) {
        let n = self.groups.len();
        let mut expect = vec![0u32; n];
        let mut live = 0;
        for (g, group) in self.groups.iter().enumerate() {
            for (i, &t) in group.tags.iter().enumerate() {
                if t == EMPTY {
                    continue;
                }
                live += 1;
                let id = group.ids[i];
                assert_eq!(t, tag_of(hash(id)), "id {id} carries its hash's tag");
                let path: Vec<usize> = probe(hash(id), n).take_while(|&p| p != g).collect();
                assert!(path.len() < n, "id {id} sits on its probe sequence");
                for p in path {
                    expect[p] += 1;
                }
            }
        }
        assert_eq!(live, self.len, "len counts the live ids");
        let counts: Vec<u32> = self.groups.iter().map(|g| g.overflow).collect();
        assert_eq!(counts, expect, "overflow counts match the ids' probe paths");
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
