//! The ractor_cluster peer of `pidmesh-bench`: ractor's `pg` process groups, distributed by
//! ractor_cluster, on the workloads of `pidmesh-bench bulk` and `bench/erlang`.
//!
//! ```text
//! cargo run --release --manifest-path bench/ractor/Cargo.toml -- <bulk_n> <lookup_iters> [per-group]
//! ```
//!
//! Starts three node processes on 127.0.0.1 (see `node.rs` for why processes), has node 0
//! join `bulk_n` groups with one member each, measures the issue rate and the time until all
//! three nodes see every group, then `pg::get_members` of a 1-member group in scattered order
//! on node 0 (members local) and node 1 (members remote). stdout gets one JSON line; logs go
//! to stderr. `CONV_TIMEOUT_S` (default 600) bounds the wait for convergence. By default one
//! actor joins every group; `per-group` spawns one actor per group first, as the Erlang module
//! spawns one process per group.

mod controller;
mod node;

use std::error::Error;
use std::time::Duration;

fn usage() -> String {
    "usage: pidmesh-ractor-peer <bulk_n> <lookup_iters> [per-group]".to_string()
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("node") {
        // node <index> <port> <peers> <comma-separated ports to dial>
        let index: usize = args.get(1).ok_or_else(usage)?.parse()?;
        let port: u16 = args.get(2).ok_or_else(usage)?.parse()?;
        let peers: usize = args.get(3).ok_or_else(usage)?.parse()?;
        let connect = args
            .get(4)
            .map(|s| {
                s.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::parse::<u16>)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(node::run(index, port, connect, peers));
    }
    let (n, iters, per_group) = match args.as_slice() {
        [n, iters] => (n, iters, false),
        [n, iters, mode] if mode == "per-group" => (n, iters, true),
        _ => return Err(usage().into()),
    };
    let n: usize = n.parse()?;
    let iters: usize = iters.parse()?;
    if n == 0 || iters == 0 {
        return Err(usage().into());
    }
    let timeout = Duration::from_secs(
        std::env::var("CONV_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let report = controller::run(n, iters, per_group, timeout)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
