//! Typed names, pids, mailboxes and handles: a message type `M` (and the reply type `R` of
//! calls) bound to a name at compile time, encoded with postcard.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let net = pidmesh_transport::MemNetwork::new(1);
//! # let registry = pidmesh::Registry::builder()
//! #     .node_name("n1")
//! #     .config(pidmesh::Config::local())
//! #     .transport(net.bind_named("n1"))
//! #     .start()
//! #     .await?;
//! use std::time::Duration;
//! use pidmesh::TypedName;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Counter { Add(u64), Get }
//!
//! const COUNTER: TypedName<Counter, u64> = TypedName::new("counter");
//!
//! let (pid, mut inbox) = registry.spawn_typed::<Counter, u64>()?;
//! let _reg = registry.register_typed(&COUNTER, &pid, "").await?;
//! tokio::spawn(async move {
//!     let mut total = 0;
//!     while let Some(Ok(m)) = inbox.recv().await {
//!         match m.msg {
//!             Counter::Add(n) => total += n,
//!             Counter::Get => { let _ = m.reply(&total); }
//!         }
//!     }
//! });
//! let counter = registry.lookup_typed(&COUNTER).ok_or("not registered")?;
//! counter.send(&Counter::Add(2))?;
//! let total: u64 = counter.call(&Counter::Get, Duration::from_secs(1)).await?;
//! assert_eq!(total, 2);
//! # registry.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The binding is checked by the compiler within one program; nothing on the wire says which
//! type a name carries. A message that does not decode as `M` at the receiver (a peer built
//! with another type) is handed to the receiver as [`Undecodable`] and counted in
//! [`crate::MailStats::undecodable`]; nothing panics.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use pidmesh_proto::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CallError, RegisterError, ReplyError, SendError, Stopped};
use crate::mailbox::{Envelope, Mailbox};
use crate::registration::Registration;
use crate::registry::Registry;

/// A unique name bound to the message type `M` its holder receives, and to the reply type `R`
/// of calls to it (`()` when it answers none).
pub struct TypedName<M, R = ()> {
    name: Cow<'static, str>,
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> TypedName<M, R> {
    /// A typed name from a static string (usable in `const`).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            _types: PhantomData,
        }
    }

    /// A typed name from a computed string.
    pub fn owned(name: impl Into<String>) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            _types: PhantomData,
        }
    }

    /// The name in the registry.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<M, R> Clone for TypedName<M, R> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<M, R> fmt::Debug for TypedName<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedName({:?})", self.name)
    }
}

/// A pid whose process receives messages of type `M` and answers calls with `R`.
pub struct TypedPid<M, R = ()> {
    pid: Pid,
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> TypedPid<M, R> {
    /// Asserts that `pid` receives `M` (and answers with `R`). Not checked: a wrong claim shows
    /// up as [`Undecodable`] messages at the receiver and [`CallError::BadReply`] at callers.
    pub fn new_unchecked(pid: Pid) -> Self {
        Self {
            pid,
            _types: PhantomData,
        }
    }

    /// The untyped pid.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }
}

impl<M, R> Clone for TypedPid<M, R> {
    fn clone(&self) -> Self {
        Self::new_unchecked(self.pid.clone())
    }
}

impl<M, R> PartialEq for TypedPid<M, R> {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid
    }
}

impl<M, R> Eq for TypedPid<M, R> {}

impl<M, R> std::hash::Hash for TypedPid<M, R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pid.hash(state);
    }
}

impl<M, R> fmt::Debug for TypedPid<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedPid({:?})", self.pid)
    }
}

/// A decoded message of type `M`, with its envelope (sender, reply route).
#[derive(Debug)]
pub struct TypedEnvelope<M, R = ()> {
    /// The message.
    pub msg: M,
    /// The envelope it came in (`body` holds the encoded bytes).
    pub envelope: Envelope,
    _reply: PhantomData<fn(R)>,
}

impl<M, R: Serialize> TypedEnvelope<M, R> {
    /// The sending process, if any.
    pub fn sender(&self) -> Option<&Pid> {
        self.envelope.sender.as_ref()
    }

    /// Answers a call with `reply`.
    ///
    /// # Errors
    /// As [`Envelope::reply`]; [`ReplyError::Encode`] if `reply` cannot be encoded (the caller is
    /// told, as for a reply too large).
    pub fn reply(&self, reply: &R) -> Result<(), ReplyError> {
        match postcard::to_stdvec(reply) {
            Ok(bytes) => self.envelope.reply(bytes),
            Err(e) => {
                if let Some(r) = &self.envelope.reply
                    && !r.replied.swap(true, std::sync::atomic::Ordering::AcqRel)
                    && let Some(shared) = r.shared.upgrade()
                {
                    crate::messaging::reject_reply(&shared, r);
                }
                Err(ReplyError::Encode(e.to_string()))
            }
        }
    }
}

/// A message that reached a typed mailbox but did not decode as its type.
#[derive(Debug, Clone)]
pub struct Undecodable {
    /// The message as received.
    pub envelope: Box<Envelope>,
    /// The decoder's complaint.
    pub error: String,
}

/// The inbox of a typed process: yields decoded messages of type `M`. Dropping it ends the
/// process, like [`Mailbox`].
#[derive(Debug)]
pub struct TypedMailbox<M, R = ()> {
    inner: Mailbox,
    _types: PhantomData<fn(M) -> R>,
}

impl<M, R> TypedMailbox<M, R> {
    /// Treats an untyped mailbox (a placed process's, say) as receiving `M`. Not checked:
    /// messages that do not decode are yielded as [`Undecodable`].
    pub fn new_unchecked(mailbox: Mailbox) -> Self {
        Self {
            inner: mailbox,
            _types: PhantomData,
        }
    }
}

impl<M: DeserializeOwned, R> TypedMailbox<M, R> {
    /// The typed pid of this mailbox.
    pub fn pid(&self) -> TypedPid<M, R> {
        TypedPid::new_unchecked(self.inner.pid.clone())
    }

    /// The next message, decoded; `Some(Err(..))` for one that did not decode (counted, and
    /// the mailbox keeps working); `None` once the registry has stopped.
    ///
    /// Cancel-safe: a message is never lost by dropping the future.
    pub async fn recv(&mut self) -> Option<Result<TypedEnvelope<M, R>, Undecodable>> {
        let env = self.inner.recv().await?;
        Some(self.decode(env))
    }

    /// The next message if one is waiting, decoded as by [`TypedMailbox::recv`].
    pub fn try_recv(&mut self) -> Option<Result<TypedEnvelope<M, R>, Undecodable>> {
        let env = self.inner.try_recv()?;
        Some(self.decode(env))
    }

    /// The untyped mailbox (the process goes on).
    pub fn into_inner(self) -> Mailbox {
        self.inner
    }

    fn decode(&self, envelope: Envelope) -> Result<TypedEnvelope<M, R>, Undecodable> {
        match postcard::from_bytes::<M>(&envelope.body) {
            Ok(msg) => Ok(TypedEnvelope {
                msg,
                envelope,
                _reply: PhantomData,
            }),
            Err(e) => {
                if let Some(shared) = self.inner.shared.upgrade() {
                    shared.msg.count_undecodable();
                }
                tracing::debug!(error = %e, "typed message did not decode");
                Err(Undecodable {
                    envelope: Box::new(envelope),
                    error: e.to_string(),
                })
            }
        }
    }
}

/// A handle to a typed process: sends `M`, calls for `R`.
pub struct TypedHandle<M, R = ()> {
    registry: Registry,
    pid: TypedPid<M, R>,
}

impl<M, R> Clone for TypedHandle<M, R> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            pid: self.pid.clone(),
        }
    }
}

impl<M, R> fmt::Debug for TypedHandle<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedHandle({:?})", self.pid.pid)
    }
}

fn encode<M: Serialize>(msg: &M) -> Result<Bytes, String> {
    postcard::to_stdvec(msg)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

impl<M: Serialize, R: DeserializeOwned> TypedHandle<M, R> {
    /// The typed pid.
    pub fn pid(&self) -> &TypedPid<M, R> {
        &self.pid
    }

    /// Sends `msg` without waiting (see [`Registry::send`]).
    ///
    /// # Errors
    /// See [`SendError`]; an unencodable message is reported as `TooLarge(0)`.
    pub fn send(&self, msg: &M) -> Result<(), SendError> {
        let body = encode(msg).map_err(|_| SendError::TooLarge(0))?;
        self.registry.try_send(&self.pid.pid, body)
    }

    /// Sends `msg` on behalf of the local process `from` (see [`Registry::send_from`]).
    ///
    /// # Errors
    /// As [`TypedHandle::send`], and [`SendError::NotLocal`].
    pub fn send_from(&self, from: &Pid, msg: &M) -> Result<(), SendError> {
        let body = encode(msg).map_err(|_| SendError::TooLarge(0))?;
        self.registry.send_from(from, &self.pid.pid, body)
    }

    /// Sends `msg` and waits until it is in the mailbox (see [`Registry::send_wait`]).
    ///
    /// # Errors
    /// As [`Registry::send_wait`].
    ///
    /// Cancel-safety: as [`Registry::send_wait`].
    pub async fn send_wait(&self, msg: &M) -> Result<(), SendError> {
        let body = encode(msg).map_err(|_| SendError::TooLarge(0))?;
        self.registry.send_wait(&self.pid.pid, body).await
    }

    /// Calls with `msg` and decodes the reply as `R` (see [`Registry::call`]).
    ///
    /// # Errors
    /// As [`Registry::call`]; [`CallError::BadReply`] if the reply does not decode as `R`,
    /// [`CallError::Encode`] if `msg` does not encode.
    ///
    /// Cancel-safe: as [`Registry::call`].
    pub async fn call(&self, msg: &M, timeout: Duration) -> Result<R, CallError> {
        self.call_inner(None, msg, timeout).await
    }

    /// [`TypedHandle::call`] on behalf of the local process `from`.
    ///
    /// # Errors
    /// As [`TypedHandle::call`], and [`CallError::NotLocal`].
    ///
    /// Cancel-safe: as [`Registry::call`].
    pub async fn call_from(&self, from: &Pid, msg: &M, timeout: Duration) -> Result<R, CallError> {
        self.call_inner(Some(from), msg, timeout).await
    }

    async fn call_inner(
        &self,
        from: Option<&Pid>,
        msg: &M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let body = encode(msg).map_err(CallError::Encode)?;
        let reply = self
            .registry
            .call_inner(from, &self.pid.pid, body, timeout)
            .await?;
        postcard::from_bytes(&reply).map_err(|e| CallError::BadReply(e.to_string()))
    }
}

impl Registry {
    /// A new typed process on this node and its inbox (see [`Registry::spawn_mailbox`]).
    ///
    /// # Errors
    /// [`Stopped`] if the node has stopped.
    // The pair mirrors `spawn_mailbox`'s (pid, inbox); an alias would only hide it.
    #[allow(clippy::type_complexity)]
    pub fn spawn_typed<M, R>(&self) -> Result<(TypedPid<M, R>, TypedMailbox<M, R>), Stopped> {
        self.spawn_typed_with_capacity(crate::registry::MAILBOX_CAPACITY)
    }

    /// [`Registry::spawn_typed`] with room for `capacity` waiting messages (see
    /// [`Registry::spawn_mailbox_with_capacity`]).
    ///
    /// # Errors
    /// [`Stopped`] if the node has stopped.
    #[allow(clippy::type_complexity)]
    pub fn spawn_typed_with_capacity<M, R>(
        &self,
        capacity: usize,
    ) -> Result<(TypedPid<M, R>, TypedMailbox<M, R>), Stopped> {
        let (pid, inner) = self.spawn_mailbox_with_capacity(capacity)?;
        Ok((
            TypedPid::new_unchecked(pid),
            TypedMailbox {
                inner,
                _types: PhantomData,
            },
        ))
    }

    /// Registers the typed process `pid` under the typed `name`: both must carry the same
    /// message and reply types (checked by the compiler). See [`Registry::register`].
    ///
    /// # Errors
    /// See [`RegisterError`].
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn register_typed<M, R>(
        &self,
        name: &TypedName<M, R>,
        pid: &TypedPid<M, R>,
        meta: impl Into<Bytes>,
    ) -> Result<Registration, RegisterError> {
        self.register(name.name(), &pid.pid, meta).await
    }

    /// The handle of the process holding the typed `name` (see [`Registry::lookup`]).
    pub fn lookup_typed<M, R>(&self, name: &TypedName<M, R>) -> Option<TypedHandle<M, R>> {
        let entry = self.lookup(name.name())?;
        Some(self.typed_handle(TypedPid::new_unchecked(entry.pid)))
    }

    /// Waits up to `timeout` for the typed `name` to be visible (see
    /// [`Registry::lookup_timeout`]).
    ///
    /// Cancel-safe.
    pub async fn lookup_typed_timeout<M, R>(
        &self,
        name: &TypedName<M, R>,
        timeout: Duration,
    ) -> Option<TypedHandle<M, R>> {
        let entry = self.lookup_timeout(name.name(), timeout).await?;
        Some(self.typed_handle(TypedPid::new_unchecked(entry.pid)))
    }

    /// A handle for sending to and calling a typed pid.
    pub fn typed_handle<M, R>(&self, pid: TypedPid<M, R>) -> TypedHandle<M, R> {
        TypedHandle {
            registry: self.clone(),
            pid,
        }
    }
}
