//! One measured node: a ractor_cluster `NodeServer` on 127.0.0.1, one remotable member actor,
//! and a command loop on stdin (one command per line, one reply per line on stdout) through
//! which the controller drives it. Logs go to stderr.
//!
//! ractor's `pg` is a process-wide table (a static), so each node must be its own OS process:
//! three node servers in one process would share one `pg` and see every join at once.

use std::error::Error;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, pg};
use ractor_cluster::{NodeServer, NodeServerMessage, NodeSessionMessage, RactorClusterMessage};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The cluster cookie (loopback only; the processes are started by one controller).
const COOKIE: &str = "pidmesh-ractor-peer";

/// The member's message type. It must be serializable for ractor_cluster to advertise the
/// actor to the other nodes (non-remotable actors are kept out of the distributed `pg`).
#[derive(RactorClusterMessage)]
pub enum MemberMsg {
    /// Never sent: the member only exists to be a group member.
    Nop(String),
}

/// An idle actor that joins the groups.
struct Member;

impl Actor for Member {
    type Msg = MemberMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<MemberMsg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// The name of the `i`th group: the same fixed-width names as `pidmesh-bench bulk`.
pub fn group_name(i: usize) -> String {
    format!("bulk/{i:07}")
}

/// The scattered visiting order of `pidmesh-bench bulk`'s read loops: a prime stride.
pub fn stride(n: usize) -> usize {
    match 7919 % n.max(1) {
        0 => 1,
        s => s,
    }
}

async fn ready_sessions(server: &ActorRef<NodeServerMessage>) -> usize {
    let Ok(sessions) = ractor::call_t!(server, NodeServerMessage::GetSessions, 2000) else {
        return 0;
    };
    let mut ready = 0;
    for s in sessions.values() {
        if let Ok(true) = ractor::call_t!(s.actor, NodeSessionMessage::GetReadyState, 2000) {
            ready += 1;
        }
    }
    ready
}

/// The largest `k ≤ n` such that group `k - 1` has a member, by binary search. Joins issued in
/// order on one node reach a peer in order (one session, one TCP connection, one actor
/// applying them), so the visible groups are a prefix and this is their count; the controller
/// checks the exact count with `count` at the end.
fn visible_prefix(names: &[String]) -> usize {
    let (mut lo, mut hi) = (0usize, names.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if pg::get_members(&names[mid - 1]).is_empty() {
            hi = mid - 1;
        } else {
            lo = mid;
        }
    }
    lo
}

/// Runs node `index`, listening on `port`, dialing the nodes on `connect`, expecting `peers`
/// ready sessions before it reports `ready`.
///
/// # Errors
/// The node server did not start or a connection could not be made.
pub async fn run(
    index: usize,
    port: u16,
    connect: Vec<u16>,
    peers: usize,
) -> Result<(), Box<dyn Error>> {
    let server = NodeServer::new(
        port,
        COOKIE.to_string(),
        format!("node{index}"),
        "127.0.0.1".to_string(),
        None,
        None,
    )
    .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (server_ref, server_handle) = Actor::spawn(None, server, ()).await?;
    for p in connect {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ractor_cluster::client_connect(&server_ref, format!("127.0.0.1:{p}")).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("node{index}: connect to port {p}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("connect to port {p}: {e}").into()),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready_sessions(&server_ref).await < peers {
        if Instant::now() > deadline {
            return Err(format!("node{index}: {peers} sessions not ready after 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (member, member_handle) = Actor::spawn(None, Member, ()).await?;
    println!("ready");

    let mut names: Vec<String> = Vec::new();
    let mut extra = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<usize, Box<dyn Error>> {
            Ok(words
                .get(i)
                .ok_or_else(|| format!("missing argument in {line:?}"))?
                .parse::<usize>()?)
        };
        if let Some(&cmd) = words.first()
            && cmd != "quit"
        {
            let n = num(1)?;
            if names.len() != n {
                names = (0..n).map(group_name).collect();
            }
        }
        match words.first().copied() {
            Some("join") => {
                // `join N per-group`: one actor per group, spawned before the clock starts
                // (as the Erlang module spawns one process per group); else one actor joins
                // every group (as pidmesh's bulk registers every name for one process).
                let cells: Vec<ractor::ActorCell> = if words.get(2) == Some(&"per-group") {
                    for _ in extra.len()..names.len() {
                        extra.push(Actor::spawn(None, Member, ()).await?);
                    }
                    extra.iter().map(|(a, _)| a.get_cell()).collect()
                } else {
                    vec![member.get_cell(); names.len()]
                };
                // The issuing loop runs on a blocking thread, so both runtime workers stay
                // free for the node's sessions, which forward the joins as they come.
                let batch = names.clone();
                let took = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    for (name, cell) in batch.into_iter().zip(cells) {
                        pg::join(name, vec![cell]);
                    }
                    t.elapsed()
                })
                .await?;
                println!("joined {}", took.as_nanos());
            }
            Some("visible") => println!("visible {}", visible_prefix(&names)),
            Some("count") => {
                let exact = names
                    .iter()
                    .filter(|g| pg::get_members(g).len() == 1)
                    .count();
                println!("count {exact}");
            }
            Some("lookup") => {
                let iters = num(2)?.max(1);
                let n = names.len().max(1);
                let step = stride(n);
                let mut bad = 0usize;
                let mut rounds = Vec::new();
                for _ in 0..3 {
                    let t = Instant::now();
                    for i in 0..iters {
                        let g = &names[(i * step) % n];
                        if black_box(pg::get_members(black_box(g))).len() != 1 {
                            bad += 1;
                        }
                    }
                    rounds.push(t.elapsed().as_secs_f64() * 1e9 / iters as f64);
                }
                rounds.sort_by(f64::total_cmp);
                println!("lookup {} {bad}", rounds[1]);
            }
            Some("quit") => break,
            _ => println!("error unknown command {line:?}"),
        }
    }
    member.stop(None);
    for (a, _) in &extra {
        a.stop(None);
    }
    server_ref.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = member_handle.await;
        let _ = server_handle.await;
    })
    .await;
    Ok(())
}
