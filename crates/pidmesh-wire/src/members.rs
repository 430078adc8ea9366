//! The push-pull membership exchange (sync class): a joining node sends the members it knows and
//! gets the contacted node's live members back in one exchange, so it does not have to learn a
//! large cluster one SWIM gossip update at a time.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{DecodeError, NodeId, check_user_name};

/// Most member records in one [`MembersMsg::List`]; longer lists travel as several messages (the
/// last one has `last` set). With node names at their longest (255 bytes) a full message stays
/// near 1.2 MB, well under [`crate::MAX_SYNC_MSG_LEN`]; with typical names it is ~30 B a record.
pub const MAX_MEMBERS_PER_MSG: usize = 4096;

/// One live member as the sender's SWIM layer knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member's identity for this life.
    pub node: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its SWIM identity renewal counter.
    pub bump: u16,
    /// Its SWIM incarnation as the sender knows it.
    pub incarnation: u16,
}

/// A push-pull membership message (carried as `SyncV1::Members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembersMsg {
    /// A part of the sender's list of live members (itself excluded).
    List {
        /// The sender.
        from: NodeId,
        /// The intended receiver (a restarted node ignores lists meant for its previous life).
        to: NodeId,
        /// Live members the sender knows (at most [`MAX_MEMBERS_PER_MSG`]).
        members: Vec<MemberRecord>,
        /// Set on the last part of a request: the sender asks for the receiver's list in return.
        reply_wanted: bool,
        /// True on the last part of the list.
        last: bool,
    },
    /// The receiver of a request is answering too many already; the sender asks someone else.
    Busy {
        /// The busy node.
        from: NodeId,
        /// The node whose request is refused.
        to: NodeId,
    },
}

impl MembersMsg {
    /// Bounds and names, as [`crate::Validate`] requires.
    pub(crate) fn check(&self) -> Result<(), DecodeError> {
        let node =
            |n: &NodeId| check_user_name(&n.name).map_err(|_| DecodeError::Invalid("node name"));
        match self {
            MembersMsg::List {
                from, to, members, ..
            } => {
                node(from)?;
                node(to)?;
                if members.len() > MAX_MEMBERS_PER_MSG {
                    return Err(DecodeError::Invalid("too many member records"));
                }
                members.iter().try_for_each(|m| node(&m.node))
            }
            MembersMsg::Busy { from, to } => {
                node(from)?;
                node(to)
            }
        }
    }
}
