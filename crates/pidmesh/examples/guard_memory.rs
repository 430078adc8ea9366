//! Heap bytes per registration on one node, with every `Registration` guard kept: the node's
//! own storage plus what the facade keeps per guard (a bit in the guard table, and the guard
//! itself in the application's `Vec`). Counted by a counting global allocator, so the figure does not depend
//! on the machine's load.
//!
//! ```text
//! cargo run --release -p pidmesh --example guard_memory -- [N]
//! ```
//!
//! Prints the heap growth per registration with the guards kept (`with_guards`), after the
//! guards are dropped again and the names unregistered (`after_drop`), and the inline size of
//! a guard.

use pidmesh::{Config, Registration, Registry};
use pidmesh_transport::MemNetwork;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let net = MemNetwork::new(1);
    let node = Registry::builder()
        .node_name("node-0")
        .config(Config::local())
        .transport(net.bind_named("node-0"))
        .start()
        .await
        .expect("node starts");
    let (pid, _mailbox) = node.spawn_mailbox().expect("running");
    // Names of 16 bytes, as in the node-memory scenario; built before the first count.
    let names: Vec<String> = (0..n).map(|i| format!("n/{i:014}")).collect();
    // The guards' own bytes count too: the application keeps them in this `Vec`.
    let before = ALLOC.allocated();
    let mut guards: Vec<Registration> = Vec::with_capacity(n);
    for name in &names {
        guards.push(
            node.register(name, &pid, Vec::new())
                .await
                .expect("registers"),
        );
    }
    let with_guards = ALLOC.allocated();
    drop(guards);
    tokio::task::yield_now().await;
    let after_drop = ALLOC.allocated();
    let per = |a: usize| (a as f64 - before as f64) / n as f64;
    println!(
        "n={n} guard_inline_bytes={} with_guards_heap_per_registration={:.1} \
         after_drop_heap_per_registration={:.1} entries_left={}",
        std::mem::size_of::<Registration>(),
        per(with_guards),
        per(after_drop),
        node.stats().entries,
    );
    node.abort();
}
