//! A slab: values addressed by small `u32` ids, with free-slot reuse and gentle growth.

/// Values stored at stable `u32` ids. Freed ids are reused before the storage grows, and the
/// storage grows by an eighth at a time (not doubling), so at most ~12% of it is slack.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its id.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if let Some(id) = self.free.pop() {
            self.items[id as usize] = Some(value);
            return id;
        }
        if self.items.len() == self.items.capacity() {
            self.items.reserve_exact((self.items.len() / 8).max(16));
        }
        let id = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        self.items.push(Some(value));
        id
    }

    /// Takes the value at `id` out, freeing the id.
    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.items.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(value)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        self.items.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.items.get_mut(id as usize)?.as_mut()
    }

    /// Iterates the live `(id, value)` pairs by ascending id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as u32, v.as_ref()?)))
    }
}
