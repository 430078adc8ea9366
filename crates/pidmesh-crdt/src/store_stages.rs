//! The read path cut into stages, for measuring where a lookup's time goes (feature
//! `read-stages`; the lookup benchmark times each stage beside the whole read).
//!
//! Each stage does everything the stages before it do, then stops: timing them side by side
//! in one run gives the cost of each step by difference. They return a number derived from
//! what they read, so the compiler cannot drop the work.

use std::hash::Hash;

use super::{MapReader, read};

/// How far [`MapReader::read_stage`] goes along a read's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStage {
    /// Hash the key and pick its shard.
    Hash,
    /// Also take the shard's read lock (and release it).
    Lock,
    /// Also probe the shard's table: the first id whose tag matches, without reading any
    /// record (one table line for a present key).
    Table,
    /// Also read the candidate records and compare their keys: the whole lookup but building
    /// the entry iterator (one table line and one record for a present key).
    Record,
}

impl<A, K, V> MapReader<A, K, V>
where
    A: Clone,
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// Runs a read of `key` up to `stage` and returns a number made of what it read (a hash or
    /// a key id): nothing a caller needs but a measurement.
    pub fn read_stage(&self, key: &K, stage: ReadStage) -> u64 {
        let store = &*self.store;
        let (hash, si) = store.locate(key);
        if stage == ReadStage::Hash {
            return hash;
        }
        let Some(lock) = store.shards.get(si) else {
            return 0;
        };
        let guard = read(lock);
        let shard = &*guard;
        let found = match stage {
            ReadStage::Hash | ReadStage::Lock => return hash ^ si as u64,
            ReadStage::Table => shard.table.find(hash, |_| true),
            ReadStage::Record => shard
                .table
                .find(hash, |i| shard.keys.get(i).is_some_and(|k| k.key == *key)),
        };
        found.map_or(u64::MAX, u64::from)
    }
}

#[cfg(test)]
mod tests {
    use super::ReadStage;
    use crate::OrMap;

    #[test]
    fn each_stage_reads_what_it_names() {
        let mut map: OrMap<&str, String, u32> = OrMap::new();
        let names: Vec<String> = (0..2_000).map(|i| format!("name-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            map.add(&"a", n.clone(), i as u32);
        }
        let reader = map.reader();
        let absent = "absent".to_string();
        // The whole path finds every present key (an id) and not an absent one.
        assert!(
            names
                .iter()
                .all(|n| reader.read_stage(n, ReadStage::Record) != u64::MAX),
            "present keys are found"
        );
        assert_eq!(reader.read_stage(&absent, ReadStage::Record), u64::MAX);
        // The table stage stops at the first tag match: for a present key, its own id or a
        // colliding one, never "nothing".
        assert!(
            names
                .iter()
                .all(|n| reader.read_stage(n, ReadStage::Table) != u64::MAX)
        );
        // The hash stage is the key's hash: the same for the same key.
        assert_eq!(
            reader.read_stage(&names[7], ReadStage::Hash),
            reader.read_stage(&names[7].clone(), ReadStage::Hash)
        );
    }
}
