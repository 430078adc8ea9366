//! `Registry::register_many`: many unique names under one acquisition of the node's lock and
//! one wake of the driver, with the guards' watchers put in under one lock too.

use bytes::Bytes;
use pidmesh_proto::Pid;
use tokio::sync::oneshot;

use crate::driver::{WatchKey, Watchers, lock};
use crate::error::{RegisterError, Stopped};
use crate::registration::Registration;
use crate::registry::{Lost, Registry};

/// Puts in a guard's watcher unless one is already there (a live guard of the same name and
/// pid keeps its own); returns whether this one went in.
pub(crate) fn watch(watchers: &mut Watchers, key: WatchKey, tx: oneshot::Sender<Lost>) -> bool {
    match watchers.entry(key) {
        hashbrown::hash_map::Entry::Vacant(v) => {
            v.insert(tx);
            true
        }
        hashbrown::hash_map::Entry::Occupied(_) => false,
    }
}

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
        // Watch before registering: the driver may report a loss before this call returns.
        let mut watches = Vec::with_capacity(items.len());
        {
            let mut watchers = lock(&shared.watchers);
            watchers.reserve(items.len());
            for (name, pid, _) in &items {
                let (tx, rx) = oneshot::channel();
                let key: WatchKey = (name.as_ref().into(), pid.local);
                let ours = pid.node == shared.id && watch(&mut watchers, key, tx);
                watches.push((ours, rx));
            }
        }
        let outcome = shared.mutate(|n, now| {
            items
                .iter()
                .map(|(name, pid, meta)| {
                    let name = name.as_ref();
                    if crate::scope::is_scoped(name) {
                        return Err(RegisterError::InvalidName(crate::scope::SCOPED_NAME));
                    }
                    n.register(now, name, pid, meta.clone())
                        .map_err(RegisterError::from)
                })
                .collect::<Vec<_>>()
        });
        let results = match outcome {
            Ok(r) => r,
            Err(stopped) => {
                let mut watchers = lock(&shared.watchers);
                for ((name, pid, _), (ours, _)) in items.iter().zip(&watches) {
                    if *ours {
                        watchers.remove(&(name.as_ref().into(), pid.local));
                    }
                }
                return Err(stopped);
            }
        };
        let mut out = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for ((result, (ours, rx)), (name, pid, _)) in results.into_iter().zip(watches).zip(&items) {
            match result {
                Ok(entry) => out.push(Ok(Registration {
                    registry: self.clone(),
                    entry,
                    lost: rx,
                    done: false,
                })),
                Err(e) => {
                    if ours {
                        failed.push((name.as_ref(), pid.local));
                    }
                    out.push(Err(e));
                }
            }
        }
        if !failed.is_empty() {
            let mut watchers = lock(&shared.watchers);
            for (name, local) in failed {
                watchers.remove(&(name.into(), local));
            }
        }
        Ok(out)
    }
}
