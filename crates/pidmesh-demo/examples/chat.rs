//! A small chat service on three nodes over loopback QUIC (mutual TLS), built from the
//! messaging API: a chat room is a placed process (`get_or_start`, it lands on the node its key
//! hashes to), users are typed processes registered under typed names, joining a room and
//! reading its history are calls, and the room monitors its members so it notices when one
//! leaves, a user's process ends, or a user's node crashes.
//!
//! `cargo run --release -p pidmesh-demo --example chat`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pidmesh::{
    Config, DownReason, Placement, Registry, Resolver, StartContext, TypedHandle, TypedMailbox,
    TypedName, TypedPid,
};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const T: Duration = Duration::from_secs(10);

/// What a room receives. Calls answer with [`RoomReply`].
#[derive(Debug, Serialize, Deserialize)]
enum Room {
    /// A user joins (call): the answer is the history so far.
    Join { user: String, session: pidmesh::Pid },
    /// A line of chat, relayed to every member.
    Say { user: String, text: String },
    /// The room's history (call).
    History,
    /// Sent by the room to itself when a member's monitor fires.
    Gone { user: String, why: String },
}

/// Answers of the room.
type RoomReply = Vec<String>;

/// What a user's session receives: lines to show.
#[derive(Debug, Serialize, Deserialize)]
struct Line(String);

fn session_name(user: &str) -> TypedName<Line> {
    TypedName::owned(format!("session/{user}"))
}

/// The room process: placed by `get_or_start("room", name)` on one node of the cluster.
async fn room(ctx: StartContext) {
    let StartContext {
        key,
        pid,
        mailbox,
        registry,
        lost,
        ..
    } = ctx;
    let host = registry.node_id().name.to_string();
    println!("    [{host}] room {key:?} started as {pid}");
    let me: TypedHandle<Room, RoomReply> = registry.typed_handle(TypedPid::new_unchecked(pid));
    let mut inbox: TypedMailbox<Room, RoomReply> = TypedMailbox::new_unchecked(mailbox);
    let mut members: BTreeMap<String, TypedHandle<Line>> = BTreeMap::new();
    let mut history: Vec<String> = Vec::new();
    loop {
        let msg = tokio::select! {
            _ = lost.wait() => break,
            m = inbox.recv() => m,
        };
        let Some(msg) = msg else { break };
        let msg = match msg {
            Ok(m) => m,
            Err(bad) => {
                println!(
                    "    [{host}] room ignored an undecodable message: {}",
                    bad.error
                );
                continue;
            }
        };
        let line = match &msg.msg {
            Room::Join { user, session } => {
                let _ = msg.reply(&history);
                // Watch the member: no traffic per monitor; it fires on the session's exit,
                // its node's leave, or its node's crash.
                let monitor = registry.monitor(session);
                let (me, user2) = (me.clone(), user.clone());
                tokio::spawn(async move {
                    let why = format!("{:?}", monitor.await);
                    let _ = me.send(&Room::Gone { user: user2, why });
                });
                members.insert(
                    user.clone(),
                    registry.typed_handle(TypedPid::new_unchecked(session.clone())),
                );
                format!("* {user} joined")
            }
            Room::Say { user, text } => format!("{user}: {text}"),
            Room::History => {
                let _ = msg.reply(&history);
                continue;
            }
            Room::Gone { user, why } => {
                members.remove(user);
                format!("* {user} left ({why})")
            }
        };
        println!("    [{host}] room {key}: {line}");
        for m in members.values() {
            let _ = m.send(&Line(line.clone()));
        }
        history.push(line);
    }
    println!("    [{host}] room {key:?} stopped");
}

/// A user's session: a typed process under `session/<user>` that prints what it receives.
async fn session(
    registry: &Registry,
    user: &str,
) -> Result<
    (
        TypedPid<Line>,
        pidmesh::Registration,
        tokio::task::JoinHandle<()>,
    ),
    BoxError,
> {
    let (pid, mut inbox) = registry.spawn_typed::<Line, ()>()?;
    let reg = registry
        .register_typed(&session_name(user), &pid, "")
        .await?;
    let who = user.to_string();
    let task = tokio::spawn(async move {
        while let Some(Ok(line)) = inbox.recv().await {
            println!("      <{who}'s screen> {}", line.msg.0);
        }
    });
    Ok((pid, reg, task))
}

async fn room_handle(
    registry: &Registry,
    room: &str,
) -> Result<TypedHandle<Room, RoomReply>, BoxError> {
    let pid = registry.get_or_start("room", room, T).await?;
    Ok(registry.typed_handle(TypedPid::new_unchecked(pid)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let ca = DevCa::new("pidmesh chat example CA")?;
    let names = ["alpha", "beta", "gamma"];
    let mut transports = Vec::new();
    for name in names {
        let tls = ca.cluster_tls(name, ring_provider())?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        transports.push(QuicTransport::bind(any, QuicConfig::new(tls)).await?);
    }
    let seed = pidmesh_transport::Transport::local_addr(&transports[0]);
    let mut nodes = Vec::new();
    let mut placements: Vec<Placement> = Vec::new();
    for (name, transport) in names.iter().zip(transports) {
        let r = Registry::builder()
            .node_name(*name)
            .seeds([seed])
            .config(Config::local())
            .resolver(Resolver::keep_oldest())
            .transport(transport)
            .start()
            .await?;
        placements.push(r.placement("room", room).await?);
        nodes.push(r);
    }
    for r in &nodes {
        if r.wait_for_members(3, T).await < 3 {
            return Err("the cluster did not form".into());
        }
        if r.wait_for_group_members("pidmesh.placement/room", 3, T)
            .await
            < 3
        {
            return Err("not every node serves rooms yet".into());
        }
    }
    println!("== 3 nodes up over QUIC: {names:?}; every node can host rooms");

    // Users on the nodes that do not host the room, so a crash below spares the room.
    let host = nodes[0]
        .placement_target("room", "lobby")
        .ok_or("no node serves rooms")?;
    println!("== room \"lobby\" hashes to {host}");
    let others: Vec<usize> = (0..3).filter(|&i| *nodes[i].node_id() != host).collect();
    let (ann_node, bob_node) = (others[0], others[1]);
    let host_node = (0..3)
        .find(|&i| *nodes[i].node_id() == host)
        .ok_or("no host")?;

    println!(
        "== ann (on {}) and bob (on {}) start sessions",
        names[ann_node], names[bob_node]
    );
    let (ann, _ann_reg, ann_task) = session(&nodes[ann_node], "ann").await?;
    let (bob, bob_reg, bob_task) = session(&nodes[bob_node], "bob").await?;
    let (cat, cat_reg, cat_task) = session(&nodes[host_node], "cat").await?;

    // Anyone can find a session by its typed name; the compiler checks the message type.
    let to_bob = nodes[ann_node]
        .lookup_typed_timeout(&session_name("bob"), T)
        .await
        .ok_or("bob's session not visible")?;
    to_bob.send(&Line("(direct) hi bob, it's ann".into()))?;

    println!("== each joins the lobby: get_or_start places it, join is a call");
    for (node, user, pid) in [
        (ann_node, "ann", &ann),
        (bob_node, "bob", &bob),
        (host_node, "cat", &cat),
    ] {
        let lobby = room_handle(&nodes[node], "lobby").await?;
        let started = Instant::now();
        let history = lobby
            .call(
                &Room::Join {
                    user: user.into(),
                    session: pid.pid().clone(),
                },
                T,
            )
            .await?;
        println!(
            "   {user} joined via {} in {:?}; history had {} lines",
            names[node],
            started.elapsed(),
            history.len()
        );
    }
    let lobby = room_handle(&nodes[ann_node], "lobby").await?;
    lobby
        .send_wait(&Room::Say {
            user: "ann".into(),
            text: "hello everyone".into(),
        })
        .await?;
    room_handle(&nodes[bob_node], "lobby")
        .await?
        .send_wait(&Room::Say {
            user: "bob".into(),
            text: "hi ann".into(),
        })
        .await?;

    println!("== cat's session ends (its mailbox is dropped): the room's monitor fires");
    drop(cat_reg);
    cat_task.abort();
    let history = |n: usize| {
        let lobby = lobby.clone();
        async move {
            let h = lobby.call(&Room::History, T).await?;
            Ok::<_, BoxError>(h.len() >= n)
        }
    };
    let mut waited = Duration::ZERO;
    while !history(6).await? {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
        if waited > Duration::from_secs(30) {
            return Err("cat's departure not seen".into());
        }
    }

    println!(
        "== bob's node {} crashes: the room sees NodeDown",
        names[bob_node]
    );
    let crashed = Instant::now();
    drop(bob_reg);
    nodes[bob_node].abort();
    bob_task.abort();
    let watcher = nodes[ann_node].clone();
    let bob_pid = bob.pid().clone();
    let reason = tokio::time::timeout(T * 3, watcher.monitor(&bob_pid)).await?;
    println!(
        "   a monitor on bob's session fired with {reason:?} {:?} after the crash",
        crashed.elapsed()
    );
    if reason != DownReason::NodeDown {
        return Err(format!("expected NodeDown, got {reason:?}").into());
    }
    let h = lobby.call(&Room::History, T).await?;
    let final_history = loop {
        let h2 = lobby.call(&Room::History, T).await?;
        if h2.iter().any(|l| l.starts_with("* bob left")) {
            break h2;
        }
        if crashed.elapsed() > Duration::from_secs(30) {
            return Err(format!("room never saw bob leave: {h:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("== the lobby's history:");
    for l in &final_history {
        println!("   {l}");
    }
    drop(placements);
    ann_task.abort();
    for (i, r) in nodes.iter().enumerate() {
        if i != bob_node {
            r.shutdown().await;
        }
    }
    println!("== done");
    Ok(())
}
