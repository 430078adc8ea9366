//! The SWIM identity of a node.

use std::net::SocketAddr;

use pidmesh_wire::NodeId;
use serde::{Deserialize, Serialize};

/// What SWIM (foca) knows a node as: its [`NodeId`], the address to reach it, and a renewal counter.
///
/// foca keeps one identity per address. A node restarted at the same address has a newer
/// incarnation and wins; a node that was wrongly declared down renews itself by bumping `bump`,
/// which keeps its `NodeId` (and so its pids and registrations) unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node's identity for this life.
    pub node: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Renewal counter (bumped after a false "down").
    pub bump: u16,
}

impl Member {
    /// A stand-in for a seed whose identity is not known yet: only the address is real.
    /// It loses every conflict against a real identity at the same address.
    pub(crate) fn placeholder(addr: SocketAddr) -> Self {
        Self {
            node: NodeId::new("", 0),
            addr,
            bump: 0,
        }
    }

    /// True for identities that stand for a real node (not a seed placeholder, not garbage).
    pub(crate) fn is_real(&self) -> bool {
        pidmesh_wire::check_key_name(&self.node.name).is_ok()
            && self.node.name.len() <= pidmesh_wire::MAX_NODE_NAME_LEN
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            node: self.node.clone(),
            addr: self.addr,
            bump: self.bump.wrapping_add(1).max(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.node.incarnation, self.bump) > (adversary.node.incarnation, adversary.bump)
    }
}
