//! `pidmesh-wire`: the bytes pidmesh nodes exchange.
//!
//! One versioned top-level enum per traffic class, encoded with postcard:
//!
//! | class | message | size limit |
//! |---|---|---|
//! | membership (datagrams) | [`Datagram`] | [`MAX_DATAGRAM_LEN`] |
//! | delta (reliable) | [`DeltaMsg`] | [`MAX_DELTA_MSG_LEN`] |
//! | sync (reliable) | [`SyncMsg`] | [`MAX_SYNC_MSG_LEN`] |
//! | mail (reliable) | [`MailMsg`] | [`MAX_MAIL_MSG_LEN`] |
//!
//! Rules that keep the format evolvable and safe on hostile input:
//! * a new wire version is a new variant of the top-level enum (the major version also travels in
//!   the QUIC ALPN, [`ALPN`]); existing variants and fields never change;
//! * decoding checks the length first, rejects trailing bytes, then validates the content
//!   (name and metadata bounds, well-formed dot ranges) so a decoded message is safe to apply;
//! * no `skip_serializing_if`, internally tagged or untagged enums, or `flatten` (postcard is not
//!   self-describing).

#![forbid(unsafe_code)]

mod flavor;
mod members;
mod meta;
mod text;
mod types;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use compact_str::CompactString;
pub use members::{MAX_MEMBERS_PER_MSG, MemberRecord, MembersMsg};
pub use types::{Hlc, Key, KeyKind, NodeId, Pid, Value};

/// The kind of traffic a message belongs to; each transport maps classes to its primitives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TrafficClass {
    /// SWIM packets ([`Datagram`]): small, best effort, may be lost, duplicated or reordered.
    Membership,
    /// Batches of registry deltas ([`DeltaMsg`]): reliable and ordered per peer pair.
    Delta,
    /// Anti-entropy ([`SyncMsg`]): reliable and ordered per peer pair.
    Sync,
    /// Application messages between mailboxes ([`MailMsg`]): reliable and ordered per peer pair.
    Mail,
}

impl TrafficClass {
    /// All classes, in a fixed order.
    pub const ALL: [TrafficClass; 4] = [Self::Membership, Self::Delta, Self::Sync, Self::Mail];

    /// A short, stable, low-cardinality label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Membership => "membership",
            Self::Delta => "delta",
            Self::Sync => "sync",
            Self::Mail => "mail",
        }
    }

    /// The largest message of this class.
    pub fn max_len(self) -> usize {
        match self {
            Self::Membership => MAX_DATAGRAM_LEN,
            Self::Delta => MAX_DELTA_MSG_LEN,
            Self::Sync => MAX_SYNC_MSG_LEN,
            Self::Mail => MAX_MAIL_MSG_LEN,
        }
    }

    /// The class's tag byte in framed transports.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Membership => 0,
            Self::Delta => 1,
            Self::Sync => 2,
            Self::Mail => 3,
        }
    }

    /// The class of a tag byte, if it names one.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_byte() == b)
    }

    /// True for the classes delivered reliably and in order per peer pair.
    pub fn is_reliable(self) -> bool {
        self != Self::Membership
    }
}

/// The wire major version; the QUIC ALPN carries it.
pub const WIRE_VERSION: u16 = 1;
/// The ALPN protocol id of this wire version.
pub const ALPN: &[u8] = b"pidmesh/1";
/// Longest key name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// Longest node name, in bytes of UTF-8.
pub const MAX_NODE_NAME_LEN: usize = 255;
/// Longest scope name, in bytes of UTF-8 (see [`scoped_name`]).
pub const MAX_SCOPE_LEN: usize = 64;
/// The control character that starts and ends the scope part of a scoped key name (see
/// [`scoped_name`]); user names never contain it.
pub const SCOPE_MARK: char = '\u{1f}';
/// Largest metadata blob per entry.
pub const MAX_META_LEN: usize = 4096;
/// Largest membership datagram.
pub const MAX_DATAGRAM_LEN: usize = 1400;
/// Largest delta message.
pub const MAX_DELTA_MSG_LEN: usize = 1 << 20;
/// Largest sync message (a snapshot is sent as many of these).
pub const MAX_SYNC_MSG_LEN: usize = 4 << 20;
/// Largest mail message (the body limit is a little smaller).
pub const MAX_MAIL_MSG_LEN: usize = 1 << 20;
/// Largest body of one application message between mailboxes.
pub const MAX_MAIL_BODY_LEN: usize = MAX_MAIL_MSG_LEN - 1024;

/// A membership-class datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Version 1: one SWIM packet as encoded by the membership layer.
    V1 {
        /// The SWIM packet.
        swim: Bytes,
    },
}

/// A delta-class message: a batch of one origin's recent changes, pushed by that origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaMsg {
    /// Version 1.
    V1(DeltaBatch),
}

/// A batch of changes of one origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaBatch {
    /// The origin: the only node allowed to send its own dots.
    pub origin: NodeId,
    /// The changes.
    pub delta: OriginDelta,
}

/// A delta restricted to one origin's dots: the sequence numbers it speaks for (`seen`) and the
/// live entries among them. A number in `seen` with no entry in `adds` means "removed".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginDelta {
    /// Inclusive ranges of the origin's sequence numbers this delta covers.
    pub seen: Vec<(u64, u64)>,
    /// Live entries with a sequence number in `seen`.
    pub adds: Vec<WireEntry>,
    /// Entries with a sequence number in `seen` that the origin removed because they lost a
    /// conflict over a unique name; their `value.at` is the time of the release, not of the
    /// registration. Other claimants that registered before that time and never saw them still
    /// need to run the resolver against them (for kill-both, to free the name on every side).
    pub released: Vec<WireEntry>,
}

/// One live entry of an origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The origin's sequence number of the add (the dot).
    pub seq: u64,
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Value,
}

/// A sync-class message: anti-entropy between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMsg {
    /// Version 1.
    V1(SyncV1),
}

/// Anti-entropy, version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncV1 {
    /// "This is what I hold of your dots, and how far my own dots go."
    ///
    /// The receiver answers with [`SyncV1::Chunk`]s of what the sender misses, and sends its own
    /// `Digest` back if it is behind on the sender's `own_max`.
    Digest {
        /// The sender.
        from: NodeId,
        /// The intended receiver (a restarted node ignores digests meant for its previous life).
        to: NodeId,
        /// The receiver's sequence numbers the sender holds, as inclusive ranges.
        have: Vec<(u64, u64)>,
        /// The sender's highest own sequence number.
        own_max: u64,
        /// How many of the receiver's entries the sender holds as live.
        live_count: u64,
        /// XOR of a mixing hash of their sequence numbers (`pidmesh_crdt::LiveDigest`): when it
        /// differs from the receiver's own, the sender holds entries the receiver removed, and
        /// the receiver answers with its whole state.
        live_hash: u64,
    },
    /// A part of the sender's own state (possibly all of it).
    Chunk {
        /// The sender, whose dots the chunk carries.
        from: NodeId,
        /// The intended receiver.
        to: NodeId,
        /// The state.
        delta: OriginDelta,
        /// True on the last chunk of a reply.
        last: bool,
    },
    /// "I claim the singleton name `name` with this entry (my own dot): what do you hold under
    /// it?" The receiver joins the claim, then answers with [`SyncV1::ClaimAck`].
    ClaimCheck {
        /// The claimant, whose dot the claim carries.
        from: NodeId,
        /// The intended receiver.
        to: NodeId,
        /// The claimed unique name.
        name: Arc<str>,
        /// The claimant's entry under `name`.
        claim: OriginDelta,
        /// The claimant's round number, echoed in the answer.
        round: u64,
    },
    /// The answer to a [`SyncV1::ClaimCheck`]: every live entry the sender holds under `name`.
    ClaimAck {
        /// The answering node.
        from: NodeId,
        /// The claimant.
        to: NodeId,
        /// The claimed name.
        name: Arc<str>,
        /// The claimant's sequence number the check was about.
        claim_seq: u64,
        /// The round of the check this answers.
        round: u64,
        /// How many nodes the sender knows of (live or down, itself included).
        known: u32,
        /// The dots of every live entry under `name` at the sender, after joining the claim.
        holders: Vec<(NodeId, u64)>,
    },
    /// Push-pull membership exchange: a joining node's list of members and the contacted
    /// node's answer (see [`MembersMsg`]).
    Members(MembersMsg),
    /// "Which origins' dots can you vouch for?" Sent by a node catching up (a newcomer) to each
    /// member it meets; answered with [`SyncV1::Holdings`]. Nodes that predate this variant
    /// fail to decode it and drop it; the asker then falls back to [`SyncV1::Digest`].
    CatchUpAsk {
        /// The node catching up.
        from: NodeId,
        /// The intended receiver.
        to: NodeId,
    },
    /// The answer to [`SyncV1::CatchUpAsk`]: for each origin, how far the sender's causal
    /// context covers that origin's sequence numbers without a gap (so it can vouch for every
    /// entry and every removal up to there), and how many live entries of it it holds.
    Holdings {
        /// The answering holder.
        from: NodeId,
        /// The node catching up.
        to: NodeId,
        /// One row per origin.
        rows: Vec<HeldRow>,
    },
    /// "Send me `origin`'s state for sequence numbers `start ..= end`." Sent to a holder whose
    /// [`SyncV1::Holdings`] covered them; answered with [`SyncV1::Slice`]s.
    Fetch {
        /// The node catching up.
        from: NodeId,
        /// The holder asked.
        to: NodeId,
        /// Whose dots.
        origin: NodeId,
        /// First sequence number wanted.
        start: u64,
        /// Last sequence number wanted (inclusive).
        end: u64,
    },
    /// A part of `origin`'s state relayed by a holder (the answer to a [`SyncV1::Fetch`]).
    /// `delta.seen` is the part of the fetched range the holder's context covers without a gap,
    /// so a sequence number in it with no entry in `delta.adds` was removed; `delta.released`
    /// is always empty (only an origin ships its own released claims).
    Slice {
        /// The holder that relays.
        from: NodeId,
        /// The node catching up.
        to: NodeId,
        /// Whose dots the slice carries.
        origin: NodeId,
        /// The fetched range's first sequence number (identifies the request).
        start: u64,
        /// The state.
        delta: OriginDelta,
        /// True on the last message of the answer to one fetch.
        last: bool,
    },
}

/// One row of [`SyncV1::Holdings`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRow {
    /// The origin.
    pub origin: NodeId,
    /// The holder's context covers the origin's sequence numbers `1 ..= upto`.
    pub upto: u64,
    /// Live entries of the origin the holder holds.
    pub live: u64,
}

/// A mail-class message: application bytes for one mailbox.
///
/// Nodes of this version send [`MailMsg::V2`] (it carries the sending process and request/reply
/// ids); [`MailMsg::V1`] still decodes and is delivered as a plain message without a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailMsg {
    /// Version 1: node-to-mailbox bytes, no sending process.
    V1 {
        /// The sending node.
        from: NodeId,
        /// The destination process (on the receiving node).
        to: Pid,
        /// The application's bytes.
        body: Bytes,
    },
    /// Version 2: sender identity, request/reply, process-exit and leave announcements.
    V2(MailV2),
}

/// The messages of mail version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailV2 {
    /// Application bytes for one mailbox.
    Mail {
        /// The sending node.
        from: NodeId,
        /// The sending process on `from` (its local number), if the send came from a process.
        sender: Option<u64>,
        /// The destination process (on the receiving node), or for replies and rejections the
        /// calling node (the local number is then the caller's, or 0 for a bare registry).
        to: Pid,
        /// What the bytes are: a plain message, a request, a reply...
        kind: MailKind,
        /// The application's bytes (empty for acknowledgements and rejections).
        body: Bytes,
    },
    /// Processes of `from` that ended (their mailbox was dropped) since its last announcement.
    /// Sent once per exit to every live peer, batched, so remote monitors cost no traffic.
    Exited {
        /// The announcing node (the processes' host).
        from: NodeId,
        /// The local numbers of the processes that ended.
        pids: Vec<u64>,
    },
    /// `from` is leaving the cluster on purpose; all its processes end now.
    Leaving {
        /// The leaving node.
        from: NodeId,
    },
}

/// What a [`MailV2::Mail`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailKind {
    /// A plain message; no answer.
    Cast,
    /// A request: the receiving process answers with one [`MailKind::Reply`] of the same id.
    Request {
        /// The caller's request id (unique for the calling node's life).
        id: u64,
    },
    /// A plain message whose sender waits until it is in the mailbox: the receiving node
    /// answers with an empty [`MailKind::Reply`] of the same id once it is queued.
    Deliver {
        /// The sender's request id.
        id: u64,
    },
    /// The answer to a request (or the acknowledgement of a delivery).
    Reply {
        /// The id of the request answered.
        id: u64,
    },
    /// The request could not be served.
    Reject {
        /// The id of the request rejected.
        id: u64,
        /// Why.
        reason: RejectReason,
    },
}

/// Why a request was rejected by the receiving node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// No live process with that pid on the receiving node.
    NoProcess,
    /// The destination mailbox is full (requests never wait for room).
    MailboxFull,
    /// The callee's reply was larger than the mail limit.
    ReplyTooLarge,
    /// The receiving node has too many deliveries waiting for room already.
    Busy,
}

/// Why bytes could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message exceeds its class limit; nothing is sent.
    #[error("encoded message is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Class limit.
        max: usize,
    },
    /// The serializer failed.
    #[error("encoding failed: {0}")]
    Postcard(#[from] postcard::Error),
}

/// Why bytes from a peer were rejected. In every case nothing was applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than the class allows.
    #[error("message is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Received length.
        len: usize,
        /// Class limit.
        max: usize,
    },
    /// Not a valid encoding of the message (truncated, bad tag, bad UTF-8...).
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Decoded, but its content breaks a rule.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// Semantic checks a decoded message must pass before anyone acts on it.
pub trait Validate {
    /// Checks bounds and well-formedness.
    ///
    /// # Errors
    /// [`DecodeError::Invalid`] naming the broken rule.
    fn validate(&self) -> Result<(), DecodeError>;
}

fn check_node(n: &NodeId) -> Result<(), DecodeError> {
    check_user_name(&n.name).map_err(|_| DecodeError::Invalid("node name"))
}

fn check_ranges(r: &[(u64, u64)]) -> Result<(), DecodeError> {
    if r.iter().any(|&(a, b)| a == 0 || a > b) {
        return Err(DecodeError::Invalid("dot range"));
    }
    Ok(())
}

/// Checks a name as an application gives it (a name or group in the default scope, a scope's
/// own name part, a node name): non-empty UTF-8 of at most [`MAX_NAME_LEN`] bytes with no
/// control characters.
///
/// # Errors
/// A static description of the broken rule.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name is too long");
    }
    if text::has_control(name) {
        return Err("name contains a control character");
    }
    Ok(())
}

/// Checks a scope's name: non-empty UTF-8 of at most [`MAX_SCOPE_LEN`] bytes with no control
/// characters.
///
/// # Errors
/// A static description of the broken rule.
pub fn check_scope_name(scope: &str) -> Result<(), &'static str> {
    if scope.is_empty() {
        return Err("scope is empty");
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err("scope is too long");
    }
    if text::has_control(scope) {
        return Err("scope contains a control character");
    }
    Ok(())
}

/// Checks a key name as it travels: either a user name ([`check_user_name`]) in the default
/// scope, or a scoped name as [`scoped_name`] builds it (a valid scope and a valid user name).
///
/// # Errors
/// A static description of the broken rule.
pub fn check_key_name(name: &str) -> Result<(), &'static str> {
    match name.strip_prefix(SCOPE_MARK) {
        None => check_user_name(name),
        Some(rest) => {
            let (scope, inner) = rest
                .split_once(SCOPE_MARK)
                .ok_or("scoped name without its separator")?;
            check_scope_name(scope)?;
            check_user_name(inner)
        }
    }
}

/// The key name of `name` in `scope`: `SCOPE_MARK scope SCOPE_MARK name`.
///
/// User names cannot contain control characters ([`check_user_name`]), so no name of the
/// default scope, and no name of another scope, encodes to the same key: scopes never collide.
/// The default scope is the plain name, so its bytes on the wire are unchanged.
///
/// # Errors
/// A static description of the broken rule (of the scope or of the name).
pub fn scoped_name(scope: &str, name: &str) -> Result<CompactString, &'static str> {
    check_scope_name(scope)?;
    check_user_name(name)?;
    let mut s = CompactString::with_capacity(scope.len() + name.len() + 2);
    s.push(SCOPE_MARK);
    s.push_str(scope);
    s.push(SCOPE_MARK);
    s.push_str(name);
    Ok(s)
}

/// Splits a key name into its scope (`None` for the default scope) and the name within it.
/// A name that starts with [`SCOPE_MARK`] but is not well formed (never the case after
/// [`check_key_name`]) is returned whole, in the default scope.
pub fn split_scoped(name: &str) -> (Option<&str>, &str) {
    name.strip_prefix(SCOPE_MARK)
        .and_then(|rest| rest.split_once(SCOPE_MARK))
        .map_or((None, name), |(scope, inner)| (Some(scope), inner))
}

impl Validate for OriginDelta {
    fn validate(&self) -> Result<(), DecodeError> {
        check_ranges(&self.seen)?;
        // Each dot names one add: no sequence number may appear twice. A batch of adds alone
        // in rising order (as an origin sends them) has none, which one pass shows; anything
        // else is sorted to find out.
        let rising = self.released.is_empty() && self.adds.windows(2).all(|w| w[0].seq < w[1].seq);
        if !rising {
            let mut seqs: Vec<u64> = self
                .adds
                .iter()
                .chain(&self.released)
                .map(|e| e.seq)
                .collect();
            seqs.sort_unstable();
            if seqs.windows(2).any(|w| w[0] == w[1]) {
                return Err(DecodeError::Invalid("sequence number used twice"));
            }
        }
        for e in self.adds.iter().chain(&self.released) {
            if e.seq == 0 {
                return Err(DecodeError::Invalid("sequence number 0"));
            }
            if !self.seen.iter().any(|&(a, b)| a <= e.seq && e.seq <= b) {
                return Err(DecodeError::Invalid("entry outside the delta's ranges"));
            }
            check_key_name(&e.key.name).map_err(DecodeError::Invalid)?;
            if e.value.meta.len() > MAX_META_LEN {
                return Err(DecodeError::Invalid("metadata too large"));
            }
        }
        Ok(())
    }
}

impl Validate for Datagram {
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

impl Validate for DeltaMsg {
    fn validate(&self) -> Result<(), DecodeError> {
        let DeltaMsg::V1(b) = self;
        check_node(&b.origin)?;
        b.delta.validate()
    }
}

impl Validate for SyncMsg {
    fn validate(&self) -> Result<(), DecodeError> {
        let SyncMsg::V1(m) = self;
        match m {
            SyncV1::Digest { from, to, have, .. } => {
                check_node(from)?;
                check_node(to)?;
                check_ranges(have)
            }
            SyncV1::Chunk {
                from, to, delta, ..
            } => {
                check_node(from)?;
                check_node(to)?;
                delta.validate()
            }
            SyncV1::ClaimCheck {
                from,
                to,
                name,
                claim,
                ..
            } => {
                check_node(from)?;
                check_node(to)?;
                check_key_name(name).map_err(DecodeError::Invalid)?;
                claim.validate()?;
                if claim.adds.len() != 1 || *claim.adds[0].key.name != **name {
                    return Err(DecodeError::Invalid(
                        "claim must carry one entry under the name",
                    ));
                }
                Ok(())
            }
            SyncV1::ClaimAck {
                from,
                to,
                name,
                holders,
                ..
            } => {
                check_node(from)?;
                check_node(to)?;
                check_key_name(name).map_err(DecodeError::Invalid)?;
                holders.iter().try_for_each(|(n, _)| check_node(n))
            }
            SyncV1::Members(m) => m.check(),
            SyncV1::CatchUpAsk { from, to } => {
                check_node(from)?;
                check_node(to)
            }
            SyncV1::Holdings { from, to, rows } => {
                check_node(from)?;
                check_node(to)?;
                rows.iter().try_for_each(|r| check_node(&r.origin))
            }
            SyncV1::Fetch {
                from,
                to,
                origin,
                start,
                end,
            } => {
                check_node(from)?;
                check_node(to)?;
                check_node(origin)?;
                if *start == 0 || start > end {
                    return Err(DecodeError::Invalid("fetch of an empty or zero range"));
                }
                Ok(())
            }
            SyncV1::Slice {
                from,
                to,
                origin,
                delta,
                ..
            } => {
                check_node(from)?;
                check_node(to)?;
                check_node(origin)?;
                if !delta.released.is_empty() {
                    return Err(DecodeError::Invalid("a relayed slice carries releases"));
                }
                delta.validate()
            }
        }
    }
}

impl Validate for MailMsg {
    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            MailMsg::V1 { from, to, body } | MailMsg::V2(MailV2::Mail { from, to, body, .. }) => {
                check_node(from)?;
                check_node(&to.node)?;
                if body.len() > MAX_MAIL_BODY_LEN {
                    return Err(DecodeError::Invalid("mail body too large"));
                }
                Ok(())
            }
            MailMsg::V2(MailV2::Exited { from, .. } | MailV2::Leaving { from }) => check_node(from),
        }
    }
}

/// A message of one traffic class, with its size limit.
pub trait WireMessage: Serialize + DeserializeOwned + Validate {
    /// The largest encoding accepted or produced.
    const MAX_LEN: usize;
}

impl WireMessage for Datagram {
    const MAX_LEN: usize = MAX_DATAGRAM_LEN;
}
impl WireMessage for DeltaMsg {
    const MAX_LEN: usize = MAX_DELTA_MSG_LEN;
}
impl WireMessage for SyncMsg {
    const MAX_LEN: usize = MAX_SYNC_MSG_LEN;
}
impl WireMessage for MailMsg {
    const MAX_LEN: usize = MAX_MAIL_MSG_LEN;
}

/// Encodes a message, refusing to produce more than its class limit.
///
/// # Errors
/// [`EncodeError::TooLarge`] when over the limit (callers split their data into smaller messages).
pub fn encode<M: WireMessage>(msg: &M) -> Result<Bytes, EncodeError> {
    encode_sized(msg, 0)
}

/// [`encode`] into a buffer that starts with room for `size_hint` bytes: a caller that knows
/// about how large the message will be (a batch of entries) saves the buffer's regrowth and
/// copies. The bytes are those of [`encode`]; the hint only sizes the first allocation.
///
/// # Errors
/// As [`encode`].
pub fn encode_sized<M: WireMessage>(msg: &M, size_hint: usize) -> Result<Bytes, EncodeError> {
    let v = postcard::serialize_with_flavor(
        msg,
        flavor::VecOut::with_capacity(size_hint.min(M::MAX_LEN)),
    )?;
    if v.len() > M::MAX_LEN {
        return Err(EncodeError::TooLarge {
            len: v.len(),
            max: M::MAX_LEN,
        });
    }
    Ok(Bytes::from(v))
}

/// The encoded size of a message, without allocating it.
///
/// # Errors
/// When the serializer fails (it does not for the types of this crate).
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<usize, EncodeError> {
    Ok(postcard::experimental::serialized_size(msg)?)
}

/// Decodes and validates a message of a class from bytes a peer sent.
///
/// # Errors
/// See [`DecodeError`]; on error nothing must be applied.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > M::MAX_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: M::MAX_LEN,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<M>(bytes).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    msg.validate()?;
    Ok(msg)
}
