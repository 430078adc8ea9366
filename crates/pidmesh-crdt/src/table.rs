//! A hash table of `u32` ids whose probe unit is one 64-byte cache line.
//!
//! The store keeps its key records in a slab and indexes them by hash with this table: the table
//! holds only ids, and the caller says how to compare an id's key (that reads the record). A
//! group of [`SLOTS`] slots fills one line: a one-byte tag per slot (eight bits of the hash; `0`
//! marks an empty slot), an overflow count, and the ids. A lookup reads its home group's line,
//! compares the tags, and reads the ids from that same line, so it makes one dependent access to
//! the table (one page, one line) before the record; a table of separate tag and id arrays makes
//! two.
//!
//! The twelve tags and the overflow count are the group's first 16 bytes, kept as two words, so
//! one lookup matches all twelve tags at once with a few word operations (SWAR: "SIMD within a
//! register"; the workspace forbids the `unsafe` that SSE2 intrinsics need).
//!
//! Collisions probe further groups (triangular steps over a power-of-two number of groups,
//! which visit every group). A group's overflow count is the number of live ids whose probe
//! passed it full and went on: a lookup stops at the first group whose count is zero. Removal
//! empties the slot and takes one off the counts of the groups the id's probe passed, so the
//! table needs no tombstones and never rehashes because of removals.
//!
//! The table also keeps, per id, the 32 bits of the hash it is stored under (its tag and 24 bits
//! of home position): growing reads them in id order and never hashes a key again or reads its
//! record (rehashing by key costs a hash and a random record access per id, more than the rest
//! of an insert), and removal by id needs no hash either. The home position uses those 24 bits
//! only, so past 2^24 groups (176 million ids) further groups are reached by probing alone.

/// Slots per group.
pub(crate) const SLOTS: usize = 12;
/// The tag of an empty slot.
const EMPTY: u8 = 0;

/// One cache line: tags and the overflow count (16 bytes, read as one `u128`), then the ids.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Group {
    /// Bytes 0–11: the tags of slots 0–11; bytes 12–15: the overflow count (little-endian), the
    /// live ids whose probe sequence passed this group (full) and went on.
    header: [u8; 16],
    ids: [u32; SLOTS],
}

/// One bit per byte of the 16-byte header, the lowest of each.
const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
/// The top bit of each tag byte (bytes 0–11 of the header; bytes 12–15 are the overflow count).
const TOPS: u128 = 0x0000_0000_8080_8080_8080_8080_8080_8080;
/// The overflow count's place in the header.
const OVERFLOW_SHIFT: u32 = 96;

/// Tag bytes of `header` equal to the byte splatted over `splat`, as bit `8i + 7` for slot `i`.
///
/// The lowest set bit is always a true match. Above a true match, a slot whose tag differs from
/// the sought one only in its lowest bit can be flagged too (the subtraction's borrow), so
/// callers compare every candidate's id, and rely on the lowest bit alone where they need an
/// exact answer (the first empty slot).
#[inline(always)]
fn candidates(header: u128, splat: u128) -> u128 {
    let x = header ^ splat;
    x.wrapping_sub(ONES) & !x & TOPS
}

/// The slot of the lowest candidate bit of `m` (non-zero).
#[inline(always)]
fn first(m: u128) -> usize {
    (m.trailing_zeros() / 8) as usize
}

impl Group {
    #[inline(always)]
    fn header(&self) -> u128 {
        u128::from_le_bytes(self.header)
    }

    #[inline(always)]
    fn overflow(&self) -> u32 {
        (self.header() >> OVERFLOW_SHIFT) as u32
    }

    /// Adds `by` (one or minus one) to the overflow count.
    fn add_overflow(&mut self, by: i32) {
        let [a, b, c, d] = self.overflow().wrapping_add_signed(by).to_le_bytes();
        let [.., w, x, y, z] = &mut self.header;
        (*w, *x, *y, *z) = (a, b, c, d);
    }

    /// The tag in slot `i`.
    fn tag(&self, i: usize) -> u8 {
        self.header.get(i).copied().unwrap_or(EMPTY)
    }

    /// Sets the tag of slot `i` (below [`SLOTS`]).
    #[inline]
    fn set_tag(&mut self, i: usize, tag: u8) {
        if i < SLOTS
            && let Some(t) = self.header.get_mut(i)
        {
            *t = tag;
        }
    }

    /// The first empty slot, if any.
    #[inline]
    fn first_empty(&self) -> Option<usize> {
        let m = candidates(self.header(), 0);
        (m != 0).then(|| first(m))
    }
}

/// The tag of `hash`: its top byte, never [`EMPTY`].
#[inline(always)]
fn tag_of(hash: u64) -> u8 {
    ((hash >> 56) as u8).max(1)
}

/// Bits of the home position kept per id.
const HOME_BITS: u32 = 24;

/// What the table keeps of `hash`: the tag in the top byte, the home position's bits below (never
/// 0, as the tag is not).
#[inline(always)]
fn short_of(hash: u64) -> u32 {
    (u32::from(tag_of(hash)) << HOME_BITS) | (hash as u32 & ((1 << HOME_BITS) - 1))
}

/// The tag of a short hash.
#[inline(always)]
fn short_tag(short: u32) -> u8 {
    (short >> HOME_BITS) as u8
}

/// The home group of a short hash in a table of `mask + 1` groups.
#[inline(always)]
fn home(short: u32, mask: usize) -> usize {
    (short & ((1 << HOME_BITS) - 1)) as usize & mask
}

/// `tag` in every byte of the header.
#[inline(always)]
fn splat(tag: u8) -> u128 {
    let word = 0x0101_0101_0101_0101_u64 * u64::from(tag);
    u128::from(word) | (u128::from(word) << 64)
}

/// Where a new id for the hash of a failed [`Table::entry`] goes: the first group of the probe
/// with an empty slot (how many groups the probe passed before it, and which slot), if the
/// lookup's probe met one.
#[derive(Debug)]
pub(crate) struct Vacant {
    /// Group, groups passed before it, empty slot in it.
    at: Option<(usize, usize, usize)>,
}

/// The table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    groups: Vec<Group>,
    /// Per id, the short hash ([`short_of`]) it is stored under; 0 for an id not stored.
    shorts: Vec<u32>,
    len: usize,
}

/// The groups a probe for the short hash `short` visits, in order, over `n` groups (a power of
/// two).
#[inline]
fn probe(short: u32, n: usize) -> impl Iterator<Item = usize> {
    let mask = n.wrapping_sub(1);
    let mut pos = home(short, mask);
    let mut step = 0;
    std::iter::from_fn(move || {
        let here = pos;
        step += 1;
        pos = (pos + step) & mask;
        Some(here)
    })
    .take(n)
}

/// Groups (a power of two) for `len` ids filling at most seven eighths of the slots.
fn groups_for(len: usize) -> usize {
    len.saturating_mul(8)
        .div_ceil(7 * SLOTS)
        .max(1)
        .next_power_of_two()
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

    /// Whether the next insert needs a [`Table::rebuild`] first.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity()
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
        let short = short_of(hash);
        let splat = splat(short_tag(short));
        let mask = self.groups.len().wrapping_sub(1);
        let mut pos = home(short, mask);
        let mut vacant = Vacant { at: None };
        let mut step = 0;
        // Triangular steps visit every group once in `len` steps; a lookup stops far earlier, at
        // the first group no probe went past.
        while let Some(group) = self.groups.get(pos) {
            let header = group.header();
            let mut m = candidates(header, splat);
            while m != 0 {
                if let Some(&id) = group.ids.get(first(m))
                    && eq(id)
                {
                    return Ok(id);
                }
                m &= m - 1;
            }
            if VACANT && vacant.at.is_none() {
                let free = candidates(header, 0);
                if free != 0 {
                    vacant.at = Some((pos, step, first(free)));
                }
            }
            step += 1;
            if header >> OVERFLOW_SHIFT == 0 || step > mask {
                break;
            }
            pos = (pos + step) & mask;
        }
        Err(vacant)
    }

    /// Makes room for `additional` more ids without growing meanwhile.
    // For inserts that know their count ahead; the store does not call it yet.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = self.len.saturating_add(additional);
        if want > self.capacity() {
            self.resize(want);
        }
    }

    /// Moves the ids into a table sized for `want` of them (at least as large as now), reading
    /// the kept short hashes in id order.
    #[cold]
    #[inline(never)]
    fn resize(&mut self, want: usize) {
        let groups = groups_for(want).max(self.groups.len());
        // The old groups are freed first: the short hashes say where everything goes.
        self.groups = Vec::new();
        self.groups = vec![Group::default(); groups];
        self.len = 0;
        let shorts = std::mem::take(&mut self.shorts);
        let mask = groups - 1;
        for (id, &short) in shorts.iter().enumerate() {
            if short == 0 {
                continue;
            }
            // Most ids find room in their home group: fill it in place, without the probe loop.
            if let Some(group) = self.groups.get_mut(home(short, mask))
                && let Some(i) = group.first_empty()
                && let (Some(t), Some(slot)) = (group.header.get_mut(i), group.ids.get_mut(i))
                && i < SLOTS
            {
                *t = short_tag(short);
                *slot = id as u32;
                self.len += 1;
            } else {
                self.place(short, id as u32);
            }
        }
        self.shorts = shorts;
    }

    /// Inserts `id` (which must not be in the table) under `hash` at the place `vacant` that
    /// [`Table::entry`] found for it (the table unchanged since), or grows the table (doubling)
    /// if it is full.
    #[inline]
    pub(crate) fn insert_vacant(&mut self, vacant: Vacant, hash: u64, id: u32) {
        let short = short_of(hash);
        let i = id as usize;
        if let Some(s) = self.shorts.get_mut(i) {
            *s = short;
        } else if i == self.shorts.len() {
            // Ids come from a slab, densely: a new one is the next.
            self.shorts.push(short);
        } else {
            self.shorts.resize(i, 0);
            self.shorts.push(short);
        }
        match vacant.at {
            // The kept short hashes hold `id` already: the resize places it with the rest.
            _ if self.is_full() => self.resize(self.len + 1),
            Some((g, passed, slot)) => {
                let mask = self.groups.len().wrapping_sub(1);
                let mut pos = home(short, mask);
                for step in 1..=passed {
                    if let Some(group) = self.groups.get_mut(pos) {
                        group.add_overflow(1);
                    }
                    pos = (pos + step) & mask;
                }
                debug_assert_eq!(pos, g, "the vacancy lies on the probe sequence");
                self.put(g, slot, short_tag(short), id);
            }
            None => self.place(short, id),
        }
    }

    /// Fills the empty slot `i` of group `g` with `id` under `tag`.
    #[inline]
    fn put(&mut self, g: usize, i: usize, tag: u8, id: u32) {
        let Some(group) = self.groups.get_mut(g) else {
            return;
        };
        if let Some(slot) = group.ids.get_mut(i) {
            *slot = id;
            group.set_tag(i, tag);
            self.len += 1;
        }
    }

    /// Puts `id` in the first group of the probe of `short` with an empty slot, counting the
    /// full groups it passes. The table has an empty slot.
    fn place(&mut self, short: u32, id: u32) {
        let tag = short_tag(short);
        let mask = self.groups.len().wrapping_sub(1);
        let mut pos = home(short, mask);
        for step in 1..=self.groups.len() {
            let Some(group) = self.groups.get_mut(pos) else {
                break;
            };
            if let Some(i) = group.first_empty() {
                self.put(pos, i, tag, id);
                return;
            }
            group.add_overflow(1);
            pos = (pos + step) & mask;
        }
        unreachable!("a table below its capacity has an empty slot")
    }

    /// Removes `id`; returns whether it was there.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        let short = match self.shorts.get(id as usize) {
            Some(&s) if s != 0 => s,
            _ => return false,
        };
        let tag = short_tag(short);
        let splat = splat(tag);
        let n = self.groups.len();
        let mut passed = 0;
        let mut found = false;
        for g in probe(short, n) {
            let Some(group) = self.groups.get_mut(g) else {
                break;
            };
            let mut m = candidates(group.header(), splat);
            while m != 0 {
                let i = first(m);
                m &= m - 1;
                // A candidate above a true match may be a false one, even an empty slot that
                // still holds a removed id: the tag must match too.
                if group.tag(i) == tag && group.ids.get(i) == Some(&id) {
                    group.set_tag(i, EMPTY);
                    found = true;
                    break;
                }
            }
            if found {
                break;
            }
            if group.overflow() == 0 {
                return false;
            }
            passed += 1;
        }
        if !found {
            return false;
        }
        if let Some(s) = self.shorts.get_mut(id as usize) {
            *s = 0;
        }
        for g in probe(short, n).take(passed) {
            if let Some(group) = self.groups.get_mut(g) {
                group.add_overflow(-1);
            }
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
impl Table {
    /// Inserts `id` (which must not be in the table) under `hash`.
    pub(crate) fn insert(&mut self, hash: u64, id: u32) {
        self.insert_vacant(Vacant { at: None }, hash, id);
    }

    /// Checks the overflow counts against a recount from the stored ids (`hash` gives an id's
    /// hash) and that every id is found where a lookup would look.
    pub(crate) fn check(&self, hash: impl Fn(u32) -> u64) {
        let n = self.groups.len();
        let mut expect = vec![0u32; n];
        let mut live = 0;
        for (g, group) in self.groups.iter().enumerate() {
            for (i, &id) in group.ids.iter().enumerate() {
                let t = group.tag(i);
                if t == EMPTY {
                    continue;
                }
                live += 1;
                assert_eq!(t, tag_of(hash(id)), "id {id} carries its hash's tag");
                assert_eq!(
                    self.shorts[id as usize],
                    short_of(hash(id)),
                    "id {id}'s short hash"
                );
                let path: Vec<usize> = probe(short_of(hash(id)), n)
                    .take_while(|&p| p != g)
                    .collect();
                assert!(path.len() < n, "id {id} sits on its probe sequence");
                for p in path {
                    expect[p] += 1;
                }
            }
        }
        assert_eq!(live, self.len, "len counts the live ids");
        let kept = self.shorts.iter().filter(|&&s| s != 0).count();
        assert_eq!(
            kept, self.len,
            "a short hash is kept for exactly the live ids"
        );
        let counts: Vec<u32> = self.groups.iter().map(Group::overflow).collect();
        assert_eq!(counts, expect, "overflow counts match the ids' probe paths");
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
