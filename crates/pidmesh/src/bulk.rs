//! `Registry::register_many`: many unique names under one acquisition of the node's lock and
//! one wake of the driver, with the guards' slots put in under one lock of the guard table too.

use bytes::Bytes;
use pidmesh_proto::Pid;

use crate::error::{RegisterError, Stopped};
use crate::registration::Registration;
use crate::registry::Registry;

impl Registry {
    /// Registers many unique names at once: each `(name, pid, metadata)` item as
    /// [`Registry::register`] would, in order, under one acquisition of the node's lock and
    /// with one wake of the driver (so the changes leave in as few delta batches as the node's
    /// batching allows). Returns one result per item, in the items' order.
    ///
    /// An item that fails (see [`RegisterError`]: an invalid or scoped name, a name already
    /// registered — also by an earlier item of the same call —, a process not of this node...)
    /// changes nothing; the other items are registered all the same.
    ///
    /// # Errors
    /// [`Stopped`] if the node has stopped; then nothing was registered.
    ///
    /// Cancel-safe: it waits for nothing, but once the task has used up tokio's cooperative
    /// budget it yields first (see [`Registry::register`]); cancelled there, nothing changed.
    pub async fn register_many<'p, N, M>(
        &self,
        items: impl IntoIterator<Item = (N, &'p Pid, M)>,
    ) -> Result<Vec<Result<Registration, RegisterError>>, Stopped>
    where
        N: AsRef<str>,
        M: Into<Bytes>,
    {
        tokio::task::coop::consume_budget().await;
        let shared = &self.shared;
        shared.check_running()?;
        let items: Vec<(N, &Pid, Bytes)> = items
            .into_iter()
            .map(|(name, pid, meta)| (name, pid, meta.into()))
            .collect();
        // Each slot goes in while the node is locked: the driver cannot report a loss before
        // the slot exists.
        let outcome = shared.mutate(|n, now| {
            let mut guards = shared.guards.lock();
            items
                .iter()
                .map(|(name, pid, meta)| {
                    let name = name.as_ref();
                    if crate::scope::is_scoped(name) {
                        return Err(RegisterError::InvalidName(crate::scope::SCOPED_NAME));
                    }
                    guards.check_room()?;
                    let seq = n.register_seq(now, name, pid, meta.clone())?;
                    guards.insert(seq)
                })
                .collect::<Vec<_>>()
        })?;
        let out = outcome
            .into_iter()
            .map(|r| r.map(|slot| Registration::new(self.clone(), slot)))
            .collect();
        Ok(out)
    }
}
