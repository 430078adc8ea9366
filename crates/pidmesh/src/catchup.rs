//! Knowing when a joining node holds the registry: [`Registry::is_caught_up`] and
//! [`Registry::caught_up`].
//!
//! A node that starts with seeds asks every member it meets which origins' entries it holds,
//! then fetches the registry from several of them at once, in disjoint windows. Each window
//! is applied in one pass and reported to subscribers as one [`pidmesh_proto::Event::Synced`]
//! (origin and count), not as one `Registered` per entry; a subscriber that needs the entries
//! themselves reads them (`list_prefix`, `members_of`, `lookup`) after the event. When every
//! window is held the node emits [`pidmesh_proto::Event::CaughtUp`] once.

use std::time::Duration;

use crate::registry::Registry;

impl Registry {
    /// True once this node holds every entry that the members it met when it joined reported
    /// holding (up to the highest sequence number of each origin any of them covered; origins
    /// and holders that went down meanwhile excepted). A node started without seeds has
    /// nothing to catch up and is caught up from the start. Entries registered elsewhere after
    /// the survey keep arriving as usual.
    pub fn is_caught_up(&self) -> bool {
        self.shared.read().is_caught_up()
    }

    /// Waits until [`Registry::is_caught_up`] holds or `timeout` passes; returns whether it
    /// holds at the end (false also when the node stopped).
    ///
    /// Cancel-safe.
    pub async fn caught_up(&self, timeout: Duration) -> bool {
        let _ = self
            .subscribe()
            .wait_for(timeout, || self.is_caught_up().then_some(()))
            .await;
        self.is_caught_up()
    }
}
