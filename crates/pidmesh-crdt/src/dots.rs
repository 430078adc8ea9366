//! Dots and sets of dots.

use serde::{Deserialize, Serialize};

/// The unique tag of one mutation: the actor that issued it and that actor's sequence number.
///
/// Sequence numbers start at 1 and are issued without gaps by their actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dot<A> {
    /// The actor (replica) that issued this dot.
    pub actor: A,
    /// The actor's sequence number, starting at 1.
    pub seq: u64,
}

impl<A> Dot<A> {
    /// Makes a dot.
    pub fn new(actor: A, seq: u64) -> Self {
        Self { actor, seq }
    }
}

/// A set of sequence numbers of one actor, stored as sorted, disjoint, non-adjacent
/// inclusive ranges.
///
/// This is the "version vector plus dot cloud" of the literature in one shape: when
/// the first range starts at 1 its end is the version-vector entry, and every later
/// range is part of the cloud of dots received out of order. Ranges merge as gaps
/// fill, so the common case (everything received in order) is a single range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DotSet {
    ranges: Vec<(u64, u64)>,
}

impl DotSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set `{start ..= end}`; empty when `start > end` or `start == 0`.
    pub fn from_range(start: u64, end: u64) -> Self {
        let mut s = Self::new();
        s.insert_range(start, end);
        s
    }

    /// Builds a set from arbitrary (possibly overlapping, unsorted) inclusive ranges.
    /// Ranges with `start > end` and the sequence number 0 are ignored.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut s = Self::new();
        for (a, b) in ranges {
            s.insert_range(a, b);
        }
        s
    }

    /// True if no sequence number is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many sequence numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// The ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The highest sequence number in the set, or 0.
    pub fn max(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.1)
    }

    /// The version-vector entry: the largest `n` such that `1..=n` are all in the set (0 if 1 is missing).
    pub fn contiguous(&self) -> u64 {
        match self.ranges.first() {
            Some(&(1, end)) => end,
            _ => 0,
        }
    }

    /// True if `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        // The first range whose end is >= seq is the only candidate.
        let i = self.ranges.partition_point(|r| r.1 < seq);
        self.ranges.get(i).is_some_and(|r| r.0 <= seq)
    }

    /// True if every number of `other` is in `self`.
    pub fn includes(&self, other: &DotSet) -> bool {
        other.ranges.iter().all(|&(a, b)| {
            let i = self.ranges.partition_point(|r| r.1 < a);
            self.ranges.get(i).is_some_and(|r| r.0 <= a && b <= r.1)
        })
    }

    /// True if some number is in both sets. Costs O(|other's ranges| · log |self's ranges|).
    pub fn intersects(&self, other: &DotSet) -> bool {
        other.ranges.iter().any(|&(a, b)| {
            // The first of our ranges that ends at or after `a` is the only candidate.
            let i = self.ranges.partition_point(|r| r.1 < a);
            self.ranges.get(i).is_some_and(|r| r.0 <= b)
        })
    }

    /// Adds one sequence number (0 is ignored).
    pub fn insert(&mut self, seq: u64) {
        self.insert_range(seq, seq);
    }

    /// Adds `start ..= end` (0 is never a member; an empty range adds nothing).
    pub fn insert_range(&mut self, start: u64, end: u64) {
        let start = start.max(1);
        if start > end {
            return;
        }
        // Fast path: appending after (or extending) the last range, the in-order case.
        if let Some(last) = self.ranges.last_mut() {
            if start > last.1.saturating_add(1) {
                self.ranges.push((start, end));
                return;
            }
            if start >= last.0 {
                last.1 = last.1.max(end);
                return;
            }
        } else {
            self.ranges.push((start, end));
            return;
        }
        // General case: find every range that overlaps or touches [start, end] and fold them.
        let lo = self
            .ranges
            .partition_point(|r| r.1.saturating_add(1) < start);
        let hi = self
            .ranges
            .partition_point(|r| r.0 <= end.saturating_add(1));
        let (mut s, mut e) = (start, end);
        if lo < hi {
            s = s.min(self.ranges[lo].0);
            e = e.max(self.ranges[hi - 1].1);
        }
        self.ranges.splice(lo..hi, std::iter::once((s, e)));
    }

    /// Adds every number of `other`.
    pub fn union_with(&mut self, other: &DotSet) {
        for &(a, b) in &other.ranges {
            self.insert_range(a, b);
        }
    }

    /// The numbers of `self` that are not in `other`.
    pub fn difference(&self, other: &DotSet) -> DotSet {
        let mut out = DotSet::new();
        for &(a, b) in &self.ranges {
            let mut cur = a;
            let i = other.ranges.partition_point(|r| r.1 < a);
            for &(oa, ob) in &other.ranges[i..] {
                if oa > b {
                    break;
                }
                if oa > cur {
                    out.insert_range(cur, oa - 1);
                }
                cur = cur.max(ob.saturating_add(1));
                if cur > b {
                    break;
                }
            }
            if cur <= b {
                out.insert_range(cur, b);
            }
        }
        out
    }

    /// The numbers in both sets, clipped to `start ..= end`.
    pub fn clipped(&self, start: u64, end: u64) -> DotSet {
        let mut out = DotSet::new();
        for &(a, b) in &self.ranges {
            let (s, e) = (a.max(start), b.min(end));
            if s <= e {
                out.ranges.push((s, e));
            }
        }
        out
    }

    /// Iterates every sequence number in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn dotset_matches_btreeset(ops in proptest::collection::vec((1u64..60, 0u64..5), 0..40),
                                   other in proptest::collection::vec((1u64..60, 0u64..5), 0..20)) {
            let mut s = DotSet::new();
            let mut model = BTreeSet::new();
            for (a, len) in &ops {
                s.insert_range(*a, a + len);
                model.extend(*a..=a + len);
            }
            let o = DotSet::from_ranges(other.iter().map(|(a, l)| (*a, a + l)));
            let omodel: BTreeSet<u64> = o.iter().collect();
            prop_assert_eq!(s.iter().collect::<BTreeSet<_>>(), model.clone());
            prop_assert_eq!(s.len(), model.len() as u64);
            // ranges are sorted, disjoint, non-adjacent
            for w in s.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
            for x in 0..70 {
                prop_assert_eq!(s.contains(x), model.contains(&x));
            }
            let diff: BTreeSet<u64> = s.difference(&o).iter().collect();
            prop_assert_eq!(diff, model.difference(&omodel).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(s.includes(&o), omodel.is_subset(&model));
            prop_assert_eq!(s.intersects(&o), !omodel.is_disjoint(&model));
            let expect_contig = (1..).take_while(|x| model.contains(x)).count() as u64;
            prop_assert_eq!(s.contiguous(), expect_contig);
        }
    }

    #[test]
    fn zero_is_never_a_member() {
        let mut s = DotSet::new();
        s.insert(0);
        assert!(s.is_empty());
        s.insert_range(0, 3);
        assert_eq!(s.ranges(), &[(1, 3)]);
        assert_eq!(s.contiguous(), 3);
    }
}
