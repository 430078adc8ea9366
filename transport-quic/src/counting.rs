//! A UDP socket for quinn that counts the payload bytes of every datagram it sends and
//! receives ([`SocketBytes`]), delegating everything else to quinn's own socket for the
//! runtime.
//!
//! Counting at the socket is exact: it sees handshakes, retransmissions, acknowledgements,
//! keep-alives and closes, on every connection the endpoint ever had, which per-connection
//! statistics would miss once a connection is gone.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pidmesh_transport::SocketBytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// quinn's socket with byte counters around it.
pub(crate) struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    bytes: SocketBytes,
}

impl CountingSocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, bytes: SocketBytes) -> Self {
        Self { inner, bytes }
    }
}

impl fmt::Debug for CountingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for CountingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)?;
        // With segmentation offload `contents` holds several datagrams back to back; their
        // payload bytes add up to its length either way.
        self.bytes.add_sent(transmit.contents.len() as u64);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &polled {
            // `len` is the bytes written into each buffer (several coalesced datagrams with
            // receive offload).
            let total: usize = meta.iter().take(*n).map(|m| m.len).sum();
            self.bytes.add_received(total as u64);
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
