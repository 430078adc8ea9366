//! Bounds on what inbound peers may hold: connections (in total and per source address), time
//! (idle and per frame) and buffered bytes (per connection and in total).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::BindError;

/// Frames up to this size are charged to their connection's budget only; larger ones also to
/// the shared [`TcpLimits::max_buffered_total`].
pub(crate) const SMALL_FRAME: usize = 64 * 1024;

/// Bounds on inbound connections; see the crate docs for how each is enforced and counted.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// Inbound connections open at once (handshaking or established); more are closed on
    /// accept. Default 1024: a cluster needs one per peer.
    pub max_inbound_connections: usize,
    /// Inbound connections open at once from one source IP address. Default 64 (room for
    /// several nodes per host and reconnects, far below the total).
    pub max_inbound_per_source: usize,
    /// An established connection on which no frame starts for this long is closed. Default
    /// 60 s: a live peer reconnects on its next message, so this only costs idle peers a
    /// reconnect, and a connection that only holds a slot is gone within a minute. A message
    /// written just as the connection closes is lost like on any connection loss (SWIM
    /// retries, anti-entropy repairs deltas).
    pub idle_timeout: Duration,
    /// A frame must be complete this long after its length prefix arrived (including any wait
    /// for buffer budget). Default 30 s: the largest frame (a 4 MiB Sync chunk) needs ~1.1
    /// Mbit/s.
    pub frame_timeout: Duration,
    /// Bytes of received frames one connection may hold (being read plus waiting for
    /// [`Transport::recv`](pidmesh_transport::Transport::recv)). Default 8 MiB: two of the
    /// largest frames. At least the largest frame of any class.
    pub max_buffered_per_connection: usize,
    /// Bytes of received frames larger than 64 KiB held over all connections. Default 128
    /// MiB: 32 of the largest frames. At least the largest frame of any class.
    pub max_buffered_total: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_inbound_connections: 1024,
            max_inbound_per_source: 64,
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(30),
            max_buffered_per_connection: 8 << 20,
            max_buffered_total: 128 << 20,
        }
    }
}

impl TcpLimits {
    pub(crate) fn validate(&self, largest_frame: usize) -> Result<(), BindError> {
        if self.max_inbound_connections == 0 || self.max_inbound_per_source == 0 {
            return Err(BindError::InvalidConfig("connection caps must be positive"));
        }
        if self.idle_timeout.is_zero() || self.frame_timeout.is_zero() {
            return Err(BindError::InvalidConfig("timeouts must be positive"));
        }
        if self.max_buffered_per_connection < largest_frame
            || self.max_buffered_total < largest_frame
        {
            return Err(BindError::InvalidConfig(
                "buffer budgets must hold the largest frame of every class",
            ));
        }
        if self.max_buffered_per_connection > Semaphore::MAX_PERMITS
            || self.max_buffered_total > Semaphore::MAX_PERMITS
        {
            return Err(BindError::InvalidConfig("buffer budgets are too large"));
        }
        Ok(())
    }
}

/// Connection slots and the shared byte budget.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_source: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    total_budget: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(limits: &TcpLimits) -> Self {
        Self {
            max_total: limits.max_inbound_connections,
            max_per_source: limits.max_inbound_per_source,
            open: Mutex::new((0, HashMap::new())),
            total_budget: Arc::new(Semaphore::new(limits.max_buffered_total)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for a connection from `ip`, or says which cap refuses it.
    pub(crate) fn admit(this: &Arc<Self>, ip: IpAddr) -> Result<Guard, &'static str> {
        let mut open = this.lock();
        if open.0 >= this.max_total {
            return Err("connection_cap");
        }
        let n = open.1.entry(ip).or_default();
        if *n >= this.max_per_source {
            return Err("per_source_cap");
        }
        *n += 1;
        open.0 += 1;
        Ok(Guard {
            admission: this.clone(),
            ip,
        })
    }

    /// Connections currently holding a slot.
    pub(crate) fn open(&self) -> usize {
        self.lock().0
    }
}

/// A connection's slot; released on drop.
#[derive(Debug)]
pub(crate) struct Guard {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// A received frame's share of the budgets; released when the frame leaves the transport.
#[derive(Debug)]
pub(crate) struct Held {
    _conn: OwnedSemaphorePermit,
    _total: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Reserves `len` bytes from the connection's budget and, for a frame larger than
    /// [`SMALL_FRAME`], from the shared one; waits while they are exhausted (the caller bounds
    /// the wait).
    pub(crate) async fn reserve(
        admission: &Admission,
        conn: &Arc<Semaphore>,
        len: usize,
    ) -> Result<Self, &'static str> {
        let n = u32::try_from(len).map_err(|_| "class_limit")?;
        let conn = conn
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| "buffer_full")?;
        let total = if len > SMALL_FRAME {
            Some(
                admission
                    .total_budget
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| "buffer_full")?,
            )
        } else {
            None
        };
        Ok(Self {
            _conn: conn,
            _total: total,
        })
    }
}
