//! `pidmesh-bench`: end-to-end cluster benchmarks for pidmesh.
//!
//! ```text
//! cargo run --release -p pidmesh-bench -- <scenario> [--transport quic|tcp] [--size N] [--smoke]
//!     [--preset lan|local] [--no-erlang | --erlang] [--no-ractor | --ractor] [--out DIR]
//!     [--nodes 10,100,1000] [--scale-budget SECS]
//! ```
//!
//! `--smoke` skips the Erlang comparison unless `--erlang` is given; `--no-erlang` skips it
//! always. The same for the ractor_cluster peer (`--ractor`, `--no-ractor`): smoke skips it
//! because building it (ractor_cluster, prost, a TLS stack) takes minutes.
//!
//! Scenarios (each module's docs say exactly what it measures):
//! - `bulk`: N registrations on one node → visible on all 3 ([`scenario::bulk`]);
//! - `groups`: N one-member groups joined on one node, `members_of` on two nodes: the `pg`
//!   peers' workload ([`scenario::groups`]);
//! - `wire`: the bulk workload's payload and socket bytes over QUIC and TCP ([`scenario::wire`]);
//! - `latency`: one registration at a time → visible on all 3 ([`scenario::latency`]);
//! - `call`: request/reply round trips local and remote, and calls/s ([`scenario::call`]);
//! - `catch-up`: a new node joins a cluster holding N entries ([`scenario::catchup`]);
//! - `failure`: a killed node's names → gone everywhere ([`scenario::failure`]);
//! - `heal`: partition heal → one winner for N contested names ([`scenario::heal`]);
//! - `memory`: heap bytes per entry of a replica's registry state ([`scenario::memory`]);
//! - `lookup`: random name lookups against a std `HashMap` in the same run ([`scenario::lookup`]);
//! - `node-memory`: resident bytes per entry of whole node processes ([`scenario::node_memory`]);
//! - `scale`: convergence in the simulator at 10/100/1,000 nodes ([`scenario::scale`]);
//! - `erlang`: Erlang/OTP `pg`/`global` on the same workloads ([`scenario::erlang`]);
//! - `ractor`: ractor_cluster's `pg` on the same workloads ([`scenario::ractor`]);
//! - `all`: every one of them in one run; writes `docs/bench/results.json`, the SVG plots under
//!   `docs/bench/` and `BENCHMARKS.md` (under `--out`, default: the repository), and the raw run
//!   under `bench-results/` (not committed);
//! - `report`: re-renders `BENCHMARKS.md` and the plots from `docs/bench/results.json`.
//!
//! Real clusters run on 127.0.0.1 in this process (3 nodes unless said otherwise). This is a
//! benchmark, not a test: it reports what it saw and never asserts a timing. A scenario that
//! fails is reported as such and the others still run.

// A binary: `pub` marks what a module offers the others, there is no outside to export to.
#![allow(unreachable_pub)]

mod cluster;
mod dist;
mod isolate;
mod node_process;
mod plot;
mod report;
mod scenario;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pidmesh::Config;

use crate::cluster::Kind;

/// Counts heap bytes for the memory scenario.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);
use crate::report::Results;

/// Sizes of every scenario.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// bulk: registrations.
    pub bulk: usize,
    /// latency: registrations, one at a time.
    pub latency: usize,
    /// catch-up: entries held by the cluster.
    pub catchup: usize,
    /// failure: names on the victim.
    pub failure_names: usize,
    /// failure: trials.
    pub failure_trials: usize,
    /// heal: contested names.
    pub heal: usize,
    /// scale: cluster sizes.
    pub scale_nodes: Vec<usize>,
    /// scale: names per node.
    pub scale_names: usize,
    /// scale: wall-clock budget per size.
    pub scale_budget: Duration,
    /// erlang: `global` registrations.
    pub global_n: usize,
    /// memory: registry sizes.
    pub memory: Vec<usize>,
    /// node-memory: names registered on the origin process.
    pub node_memory: usize,
    /// call: round trips per latency sample set.
    pub call: usize,
    /// lookup: registry sizes.
    pub lookup: Vec<usize>,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            bulk: 200_000,
            latency: 1_000,
            catchup: 1_000_000,
            failure_names: 1_000,
            failure_trials: 3,
            heal: 10_000,
            scale_nodes: vec![10, 100, 1_000],
            scale_names: 10,
            scale_budget: Duration::from_secs(480),
            global_n: 10_000,
            memory: vec![10_000, 100_000, 1_000_000],
            node_memory: 1_000_000,
            call: 10_000,
            lookup: vec![10_000, 100_000, 1_000_000],
        }
    }

    fn smoke() -> Self {
        Sizes {
            bulk: 2_000,
            latency: 20,
            catchup: 5_000,
            failure_names: 50,
            failure_trials: 1,
            heal: 50,
            scale_nodes: vec![10],
            scale_names: 5,
            scale_budget: Duration::from_secs(20),
            global_n: 100,
            memory: vec![10_000],
            node_memory: 2_000,
            call: 200,
            lookup: vec![1_000, 10_000],
        }
    }
}

/// Everything a scenario needs to know about the run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The transport.
    pub kind: Kind,
    /// The configuration preset: `lan` or `local`.
    pub preset: String,
    /// Tiny sizes.
    pub smoke: bool,
    /// Sizes.
    pub sizes: Sizes,
    /// Period of the convergence-curve sampler.
    pub sample_every: Duration,
    /// Calls per read-path timing loop.
    pub lookup_iters: usize,
    /// Run the Erlang comparison.
    pub erlang: bool,
    /// Run the ractor_cluster comparison.
    pub ractor: bool,
    /// Where outputs go (the repository root by default).
    pub out: PathBuf,
    /// Set when `all` runs this scenario in a child process: write the results there only.
    pub result_json: Option<PathBuf>,
}

impl Settings {
    /// The node configuration of the chosen preset.
    pub fn config(&self) -> Config {
        match self.preset.as_str() {
            "local" => Config::local(),
            _ => Config::lan(),
        }
    }

    /// How long to wait for N entries to converge before reporting non-convergence.
    pub fn converge_limit(&self, n: usize) -> Duration {
        Duration::from_secs(30) + Duration::from_micros(200) * u32::try_from(n).unwrap_or(u32::MAX)
    }
}

const USAGE: &str = "usage: pidmesh-bench <bulk|wire|groups|latency|call|catch-up|failure|heal|memory|node-memory|lookup|scale|erlang|ractor|all|report> \
[--transport quic|tcp] [--size N] [--smoke] [--preset lan|local] [--no-erlang | --erlang] [--no-ractor | --ractor] [--out DIR] \
[--nodes 10,100,1000] [--scale-budget SECS]";

/// The repository root (this crate lives in `crates/pidmesh-bench`).
fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Parses the command line; `None` when `-h`/`--help` asks for the usage.
fn parse_args(args: &[String]) -> anyhow::Result<Option<(String, Settings)>> {
    let mut scenario = None;
    let mut kind = Kind::Quic;
    let mut size = None;
    let mut smoke = false;
    let mut preset = None;
    let mut no_erlang = false;
    let mut force_erlang = false;
    let (mut no_ractor, mut force_ractor) = (false, false);
    let mut out = None;
    let mut nodes = None;
    let mut budget = None;
    let mut result_json = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--transport" => {
                kind = match value(a)?.as_str() {
                    "quic" => Kind::Quic,
                    "tcp" => Kind::Tcp,
                    other => bail!("unknown transport {other:?}\n{USAGE}"),
                }
            }
            "--size" => size = Some(value(a)?.parse::<usize>().context("--size")?),
            "--smoke" => smoke = true,
            "--preset" => {
                let p = value(a)?;
                if p != "lan" && p != "local" {
                    bail!("unknown preset {p:?}\n{USAGE}");
                }
                preset = Some(p);
            }
            "--no-erlang" => no_erlang = true,
            "--erlang" => force_erlang = true,
            "--no-ractor" => no_ractor = true,
            "--ractor" => force_ractor = true,
            "--out" => out = Some(PathBuf::from(value(a)?)),
            "--nodes" => {
                nodes = Some(
                    value(a)?
                        .split(',')
                        .map(|x| x.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .context("--nodes")?,
                )
            }
            "--scale-budget" => {
                budget = Some(Duration::from_secs(
                    value(a)?.parse().context("--scale-budget")?,
                ))
            }
            isolate::RESULT_FLAG => result_json = Some(PathBuf::from(value(a)?)),
            "-h" | "--help" => return Ok(None),
            s if !s.starts_with('-') && scenario.is_none() => scenario = Some(s.to_string()),
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let scenario = scenario.with_context(|| USAGE.to_string())?;
    let mut sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
    if let Some(n) = size {
        match scenario.as_str() {
            "bulk" | "wire" | "groups" | "erlang" | "ractor" => sizes.bulk = n,
            "latency" => sizes.latency = n,
            "catch-up" | "catchup" => sizes.catchup = n,
            "failure" => sizes.failure_names = n,
            "heal" => sizes.heal = n,
            "scale" => sizes.scale_names = n,
            "call" => sizes.call = n,
            "node-memory" => sizes.node_memory = n,
            _ => bail!("--size applies to one scenario, not to {scenario:?}"),
        }
    }
    if let Some(v) = nodes {
        sizes.scale_nodes = v;
    }
    if let Some(b) = budget {
        sizes.scale_budget = b;
    }
    let settings = Settings {
        kind,
        // Smoke runs use the fast timers so failure detection fits the time budget.
        preset: preset.unwrap_or_else(|| if smoke { "local" } else { "lan" }.to_string()),
        smoke,
        sizes,
        sample_every: Duration::from_millis(5),
        lookup_iters: if smoke { 10_000 } else { 1_000_000 },
        erlang: !no_erlang && (!smoke || force_erlang),
        ractor: !no_ractor && (!smoke || force_ractor),
        out: out.unwrap_or_else(repo_root),
        result_json,
    };
    Ok(Some((scenario, settings)))
}

/// Runs one scenario into `results`, recording its wall time, or its error.
async fn run_one(name: &str, s: &Settings, results: &mut Results) {
    eprintln!("== {name}");
    let t = Instant::now();
    let z = &s.sizes;
    let r: anyhow::Result<()> = async {
        match name {
            "bulk" => results.bulk = Some(scenario::bulk::run(s, z.bulk).await?),
            "wire" => results.wire = Some(scenario::wire::run(s, z.bulk).await?),
            "groups" => results.groups = Some(scenario::groups::run(s, z.bulk).await?),
            "latency" => results.latency = Some(scenario::latency::run(s, z.latency).await?),
            "call" => results.call = Some(scenario::call::run(s, z.call).await?),
            "catch-up" => results.catchup = Some(scenario::catchup::run(s, z.catchup).await?),
            "failure" => {
                results.failure =
                    Some(scenario::failure::run(s, z.failure_names, z.failure_trials).await?)
            }
            "heal" => results.heal = Some(scenario::heal::run(s, z.heal).await?),
            "scale" => {
                let (nodes, per, budget) = (z.scale_nodes.clone(), z.scale_names, z.scale_budget);
                results.scale = Some(
                    tokio::task::spawn_blocking(move || scenario::scale::run(&nodes, per, budget))
                        .await?,
                )
            }
            "memory" => {
                results.memory = Some(scenario::memory::run(&z.memory, || ALLOC.allocated()));
            }
            "lookup" => {
                let (sizes, iters) = (z.lookup.clone(), s.lookup_iters);
                results.lookup = Some(
                    tokio::task::spawn_blocking(move || scenario::lookup::run(&sizes, iters))
                        .await??,
                );
            }
            "node-memory" => {
                results.node_memory = Some(scenario::node_memory::run(s, z.node_memory, 3).await?);
            }
            "erlang" => {
                let timeout = Duration::from_secs(if s.smoke { 60 } else { 900 });
                let o = scenario::erlang::run(
                    &repo_root(),
                    z.bulk,
                    z.global_n,
                    s.lookup_iters,
                    timeout,
                )
                .await;
                if o.result.is_none() {
                    eprintln!("erlang: not available ({})", o.note);
                }
                results.erlang = Some(o);
            }
            "ractor" => {
                // Includes building the peer on first use.
                let timeout = Duration::from_secs(if s.smoke { 600 } else { 1800 });
                // The peer lives in this repository, whatever `--out` says.
                let o = scenario::ractor::run(&repo_root(), z.bulk, s.lookup_iters, timeout).await;
                if o.result.is_none() {
                    eprintln!("ractor: not available ({})", o.note);
                }
                results.ractor = Some(o);
            }
            other => bail!("unknown scenario {other:?}\n{USAGE}"),
        }
        Ok(())
    }
    .await;
    let secs = t.elapsed().as_secs_f64();
    results.wall_secs.insert(name.to_string(), secs);
    if let Some((rss, hwm)) = scenario::node_memory::status_rss(std::process::id()) {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        eprintln!(
            "   RSS {:.0} MiB, peak so far {:.0} MiB",
            mib(rss),
            mib(hwm)
        );
        results
            .rss_after
            .get_or_insert_with(Default::default)
            .insert(name.to_string(), (mib(rss), mib(hwm)));
    }
    match r {
        Ok(()) => eprintln!("   {name} done in {secs:.1} s"),
        Err(e) => {
            eprintln!("   {name} FAILED after {secs:.1} s: {e:#}");
            results.errors.insert(name.to_string(), format!("{e:#}"));
        }
    }
}

async fn run(scenario: &str, args: &[String], s: Settings, command: String) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut results = Results::new(&s, command);
    let scenario = if scenario == "catchup" {
        "catch-up"
    } else {
        scenario
    };
    if scenario == "all" {
        // The Erlang and ractor runs sit right after pidmesh's bulk and groups runs, so all
        // sides see the same machine load within minutes of each other.
        let mut order = vec!["bulk", "groups"];
        if s.erlang {
            order.push("erlang");
        }
        if s.ractor {
            order.push("ractor");
        }
        order.extend([
            "wire",
            "latency",
            "call",
            "catch-up",
            "failure",
            "heal",
            "memory",
            "node-memory",
            "lookup",
            "scale",
        ]);
        // Each scenario in a process of its own, so none starts from the memory the ones
        // before it left behind (see isolate.rs).
        let flags: Vec<String> = args.iter().filter(|a| *a != "all").cloned().collect();
        for name in order {
            isolate::run_child(name, &flags, &mut results).await;
        }
        if !s.erlang {
            results.erlang = Some(scenario::erlang::ErlangOutcome {
                result: None,
                note: if s.smoke {
                    "skipped (smoke run)".to_string()
                } else {
                    "skipped (--no-erlang)".to_string()
                },
                script: scenario::erlang::script_path(&repo_root()),
                wall_secs: 0.0,
            });
        }
        if !s.ractor {
            results.ractor = Some(scenario::ractor::RactorOutcome {
                result: None,
                note: if s.smoke {
                    "skipped (smoke run; --ractor runs it)".to_string()
                } else {
                    "skipped (--no-ractor)".to_string()
                },
                wall_secs: 0.0,
            });
        }
    } else if let Some(path) = &s.result_json {
        run_one(scenario, &s, &mut results).await;
        let json = serde_json::to_string(&results)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        return Ok(());
    } else {
        run_one(scenario, &s, &mut results).await;
        if scenario == "erlang" && results.erlang.as_ref().is_some_and(|o| o.result.is_none()) {
            println!("erlang: not available");
        }
    }
    results.total_secs = t.elapsed().as_secs_f64();
    results.machine.loadavg_end = report::loadavg();
    let written = report::write(&results, &s.out, scenario == "all")?;
    println!("{}", report::summary_table(&results));
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    eprintln!("total {:.1} s", results.total_secs);
    // Slow or unconverged figures are results; a scenario that could not run at all (a cluster
    // that never formed, a registration refused) is a failure of the run.
    if !results.errors.is_empty() {
        bail!(
            "{} scenario(s) failed: {}",
            results.errors.len(),
            results
                .errors
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Re-renders `BENCHMARKS.md` and the plots from `<out>/docs/bench/results.json` (after editing
/// the report's template, without running anything again).
fn rerender(out: &Path) -> anyhow::Result<()> {
    let path = out.join("docs/bench/results.json");
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let results: Results = serde_json::from_str(&json).context("parse results.json")?;
    for p in plot::all(&results, &out.join("docs/bench"))? {
        eprintln!("wrote {}", p.display());
    }
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, report::benchmarks_md(&results))
        .with_context(|| format!("write {}", md.display()))?;
    eprintln!("wrote {}", md.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__node") {
        // One node of the node-memory scenario, in a process of its own.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        return rt.block_on(node_process::run(&args[1..], || ALLOC.allocated()));
    }
    let Some((scenario, settings)) = parse_args(&args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    if scenario == "report" {
        return rerender(&settings.out);
    }
    let command = format!("pidmesh-bench {}", args.join(" "));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(&scenario, &args, settings, command))
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn help_is_not_an_error() {
        for a in [&["--help"][..], &["-h"], &["scale", "--nodes", "10", "-h"]] {
            assert!(matches!(parse_args(&args(a)), Ok(None)), "{a:?}");
        }
        assert!(matches!(parse_args(&args(&["scale"])), Ok(Some((s, _))) if s == "scale"));
        assert!(parse_args(&args(&["scale", "--bogus"])).is_err());
        assert!(parse_args(&args(&[])).is_err(), "a scenario is required");
    }
}
