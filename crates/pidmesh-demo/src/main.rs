//! The pidmesh demo: three nodes on 127.0.0.1 over QUIC with freshly generated certificates.
//! It registers names and groups, sends messages across nodes, cuts the cluster in two, lets
//! both sides claim the same name, heals, and shows the resolver's decision and the loser's
//! notification, with timings.
//!
//! `cargo run --release -p pidmesh-demo`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pidmesh::{Config, Event, Reason, Registry, Resolver};
use pidmesh_transport::Faults;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{QuicConfig, QuicTransport};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Timeline {
    start: Instant,
}

impl Timeline {
    fn say(&self, what: impl AsRef<str>) {
        println!(
            "[{:>9.3} s] {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

/// Polls `cond` every millisecond until it holds or 30 s pass; returns how long it took.
async fn wait_for(mut cond: impl FnMut() -> bool) -> Result<Duration, BoxError> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("timed out waiting for the cluster".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let t = Timeline {
        start: Instant::now(),
    };
    println!(
        "pidmesh demo: 3 nodes on loopback QUIC, mutual TLS, keep-oldest resolver, `local` timers\n"
    );

    let ca = DevCa::new("pidmesh demo CA")?;
    t.say("generated a development CA and one certificate per node (rcgen)");
    let faults = Faults::new();
    let names = ["alpha", "beta", "gamma"];
    let mut transports = Vec::new();
    for name in names {
        let tls = ca.cluster_tls(name, ring_provider())?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        transports.push(faults.wrap(QuicTransport::bind(any, QuicConfig::new(tls)).await?));
    }
    let addrs: Vec<SocketAddr> = transports
        .iter()
        .map(pidmesh_transport::Transport::local_addr)
        .collect();
    let mut nodes = Vec::new();
    for (name, transport) in names.iter().zip(transports) {
        let r = Registry::builder()
            .node_name(*name)
            .seeds([addrs[0]])
            .config(Config::local())
            .resolver(Resolver::keep_oldest())
            .transport(transport)
            .start()
            .await?;
        t.say(format!("started {name} at {}", r.local_addr()));
        nodes.push(r);
    }
    let took = wait_for(|| nodes.iter().all(|r| r.members().len() == 3)).await?;
    t.say(format!(
        "cluster formed: every node sees 3 members ({})",
        ms(took)
    ));

    // Names, groups and messages.
    let mut loser_watch = nodes[2].subscribe();
    let (billing, mut billing_inbox) = nodes[0].spawn_mailbox()?;
    let _billing = nodes[0].register("billing", &billing, "v1").await?;
    let took = wait_for(|| nodes.iter().all(|r| r.lookup("billing").is_some())).await?;
    t.say(format!(
        "alpha registered `billing` -> {billing}; visible on all 3 nodes after {}",
        ms(took)
    ));
    let mut workers = Vec::new();
    for r in &nodes {
        let (pid, inbox) = r.spawn_mailbox()?;
        r.join("workers/eu", &pid, Vec::new()).await?;
        workers.push((pid, inbox));
    }
    let took = wait_for(|| nodes.iter().all(|r| r.members_of("workers/eu").len() == 3)).await?;
    t.say(format!(
        "each node put a worker in group `workers/eu`; all see 3 members after {}",
        ms(took)
    ));

    let sent = Instant::now();
    let target = nodes[2]
        .lookup("billing")
        .ok_or("billing not visible on gamma")?;
    nodes[2].send(&target.pid, "invoice #42").await?;
    let msg = tokio::time::timeout(Duration::from_secs(10), billing_inbox.recv())
        .await?
        .ok_or("mailbox closed")?;
    t.say(format!(
        "gamma looked up `billing` locally and sent it a message; alpha's mailbox got {:?} from {} after {}",
        String::from_utf8_lossy(&msg.body),
        msg.from,
        ms(sent.elapsed())
    ));
    for (pid, _) in &workers {
        nodes[1].send(pid, "work item").await?;
    }
    for (_, inbox) in &mut workers {
        tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await?
            .ok_or("worker mailbox closed")?;
    }
    t.say("beta sent a work item to every member of `workers/eu`; all 3 received it");

    // Partition.
    println!();
    faults.partition(&addrs[..1], &addrs[1..]);
    t.say("--- network cut: {alpha} | {beta, gamma} ---");
    let took = wait_for(|| nodes[0].members().len() == 1 && nodes[1].members().len() == 2).await?;
    t.say(format!(
        "failure detection: each side declared the other down after {}; gamma now sees `billing` = {:?}",
        ms(took),
        nodes[2].lookup("billing").map(|e| e.pid.to_string())
    ));
    let (a, _a_inbox) = nodes[0].spawn_mailbox()?;
    let mut claim_a = nodes[0].register("scheduler", &a, "alpha's").await?;
    t.say(format!("alpha claims `scheduler` -> {a}"));
    let (g, _g_inbox) = nodes[2].spawn_mailbox()?;
    let mut claim_g = nodes[2].register("scheduler", &g, "gamma's").await?;
    t.say(format!(
        "gamma claims `scheduler` -> {g} (it cannot see alpha's claim)"
    ));

    // Heal.
    println!();
    faults.heal();
    let healed = Instant::now();
    t.say("--- network healed ---");
    let took = wait_for(|| {
        let views: Vec<_> = nodes
            .iter()
            .map(|r| r.lookup("scheduler").map(|e| e.pid))
            .collect();
        nodes.iter().all(|r| r.members().len() == 3)
            && views.windows(2).all(|w| w[0] == w[1])
            && nodes.iter().all(|r| r.members_of("workers/eu").len() == 3)
            && views[0].is_some()
            && nodes.iter().all(|r| r.list_prefix("scheduler").len() == 1)
    })
    .await?;
    t.say(format!(
        "membership merged and one `scheduler` everywhere after {}",
        ms(took)
    ));
    for r in &nodes {
        let w = r
            .lookup("scheduler")
            .map(|e| format!("{} ({})", e.pid, String::from_utf8_lossy(&e.meta)));
        t.say(format!(
            "  {} lookup(\"scheduler\") = {}",
            r.node_id().name,
            w.unwrap_or_default()
        ));
    }
    let (loser_name, lost) = tokio::select! {
        l = claim_a.lost() => ("alpha", l),
        l = claim_g.lost() => ("gamma", l),
        () = tokio::time::sleep(Duration::from_secs(10)) => return Err("no loser was told".into()),
    };
    if let Some(lost) = lost {
        t.say(format!(
            "{loser_name}'s registration guard reports Lost {{ reason: {:?}, winner: {:?} }} ({} after heal)",
            lost.reason,
            lost.winner.map(|w| w.pid.to_string()),
            ms(healed.elapsed())
        ));
        debug_assert_eq!(lost.reason, Reason::Conflict);
    }
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(1), loser_watch.recv()).await
    {
        if let Event::ConflictResolved {
            key,
            winner,
            losers,
        } = ev
        {
            t.say(format!(
                "gamma's event stream: ConflictResolved {{ {}: winner {:?}, losers {:?} }}",
                key.name,
                winner.map(|w| w.pid.to_string()),
                losers.iter().map(|l| l.pid.to_string()).collect::<Vec<_>>()
            ));
        }
    }

    println!();
    let stopping = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for r in nodes {
        tasks.spawn(async move { r.shutdown().await });
    }
    while tasks.join_next().await.is_some() {}
    t.say(format!(
        "all nodes left the cluster gracefully ({})",
        ms(stopping.elapsed())
    ));
    Ok(())
}
