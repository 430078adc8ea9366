//! Results of a run: the JSON document, the machine description, the summary table (pidmesh
//! next to Erlang/OTP and the targets) and the generated `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::Kind;
use crate::scenario::bulk::BulkResult;
use crate::scenario::catchup::CatchupResult;
use crate::scenario::erlang::{ErlangOutcome, release};
use crate::scenario::failure::FailureResult;
use crate::scenario::heal::HealResult;
use crate::scenario::latency::LatencyResult;
use crate::scenario::memory::MemoryResult;
use crate::scenario::scale::ScaleResult;

mod peers;
use peers::{peers_and_wire, ractor_details};

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Linux kernel release.
    pub kernel: String,
    /// When the run started (UTC, from `date -u`).
    pub date: String,
    /// `release` or `debug`.
    pub profile: String,
    /// Load averages (1, 5, 15 min) from /proc/loadavg when the run started.
    #[serde(default)]
    pub loadavg_start: Option<[f64; 3]>,
    /// Load averages when the run ended.
    #[serde(default)]
    pub loadavg_end: Option<[f64; 3]>,
}

/// The 1, 5 and 15 minute load averages of this machine, from /proc/loadavg.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown".into()),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            loadavg_start: loadavg(),
            loadavg_end: None,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// The transport of the real clusters.
    pub transport: Kind,
    /// The configuration preset.
    pub preset: String,
    /// True for a smoke run (tiny sizes).
    pub smoke: bool,
    /// Wall-clock seconds per scenario.
    pub wall_secs: BTreeMap<String, f64>,
    /// Wall-clock seconds of the whole run.
    pub total_secs: f64,
    /// Scenario errors (the scenario produced no figures).
    pub errors: BTreeMap<String, String>,
    /// bulk + wire + replica reads.
    pub bulk: Option<BulkResult>,
    /// Single-registration propagation.
    pub latency: Option<LatencyResult>,
    /// A new node catching up.
    pub catchup: Option<CatchupResult>,
    /// A killed node's names going away.
    pub failure: Option<FailureResult>,
    /// Partition heal with contested names.
    pub heal: Option<HealResult>,
    /// The simulator at scale.
    pub scale: Option<ScaleResult>,
    /// Heap bytes per entry of the registry state.
    #[serde(default)]
    pub memory: Option<MemoryResult>,
    /// Erlang/OTP on the same workloads.
    pub erlang: Option<ErlangOutcome>,
    /// Request/reply round trips.
    #[serde(default)]
    pub call: Option<crate::scenario::call::CallResult>,
    /// ractor_cluster's `pg` on the same workloads.
    #[serde(default)]
    pub ractor: Option<crate::scenario::ractor::RactorOutcome>,
    /// Payload and socket bytes of the bulk workload over both transports.
    #[serde(default)]
    pub wire: Option<crate::scenario::wire::WireResult>,
    /// The `pg` peers' workload on pidmesh (group joins, `members_of` on two nodes).
    #[serde(default)]
    pub groups: Option<crate::scenario::groups::GroupsResult>,
    /// Random lookups against a std map, same run.
    #[serde(default)]
    pub lookup: Option<crate::scenario::lookup::LookupResult>,
    /// Resident bytes per entry of whole node processes.
    #[serde(default)]
    pub node_memory: Option<crate::scenario::node_memory::NodeMemoryResult>,
    /// This process's resident set after each scenario: (`VmRSS`, `VmHWM`) in MiB, so the
    /// scenario that set the run's peak can be told.
    #[serde(default)]
    pub rss_after: Option<BTreeMap<String, (f64, f64)>>,
}

impl Results {
    /// Empty results for a run with these settings.
    pub fn new(s: &Settings, command: String) -> Self {
        Results {
            command,
            machine: Machine::detect(),
            transport: s.kind,
            preset: s.preset.clone(),
            smoke: s.smoke,
            wall_secs: BTreeMap::new(),
            total_secs: 0.0,
            errors: BTreeMap::new(),
            bulk: None,
            latency: None,
            catchup: None,
            failure: None,
            heal: None,
            scale: None,
            memory: None,
            erlang: None,
            call: None,
            ractor: None,
            wire: None,
            groups: None,
            lookup: None,
            node_memory: None,
            rss_after: None,
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the raw results under `<out>/bench-results/`; for a full report (`all`) also
/// `<out>/docs/bench/results.json`, the plots and `<out>/BENCHMARKS.md`. Returns the paths.
///
/// # Errors
/// A file could not be written.
pub fn write(r: &Results, out: &Path, full_report: bool) -> anyhow::Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(r)?;
    let raw_dir = out.join("bench-results");
    std::fs::create_dir_all(&raw_dir).with_context(|| format!("create {}", raw_dir.display()))?;
    let what = if full_report { "all" } else { "run" };
    let raw = raw_dir.join(format!("{what}-{}.json", unix_secs()));
    std::fs::write(&raw, &json).with_context(|| format!("write {}", raw.display()))?;
    let mut written = vec![raw];
    if !full_report {
        return Ok(written);
    }
    let docs = out.join("docs/bench");
    std::fs::create_dir_all(&docs).with_context(|| format!("create {}", docs.display()))?;
    let results = docs.join("results.json");
    std::fs::write(&results, &json).with_context(|| format!("write {}", results.display()))?;
    written.push(results);
    written.extend(crate::plot::all(r, &docs)?);
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, benchmarks_md(r)).with_context(|| format!("write {}", md.display()))?;
    written.push(md);
    Ok(written)
}

fn secs(x: Option<f64>) -> String {
    match x {
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
        None => "did not converge".to_string(),
    }
}

fn ms(x: f64) -> String {
    if x < 1.0 {
        format!("{:.0} µs", x * 1e3)
    } else {
        format!("{x:.2} ms")
    }
}

fn ns(x: f64) -> String {
    if x.is_nan() {
        "n/a".to_string()
    } else {
        format!("{x:.0} ns")
    }
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0} k/s", x / 1e3)
    } else {
        format!("{x:.0} /s")
    }
}

fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rows for the ways of issuing the bulk registrations (per-name from 1 and 4 tasks,
/// `register_many`) and the latency with one immediate push per window (same run).
fn bulk_ways_rows(r: &Results, rows: &mut Vec<[String; 4]>) {
    let na = || "—".to_string();
    if let Some(vs) = r.bulk.as_ref().and_then(|b| b.variants.as_ref()) {
        for v in vs {
            rows.push([
                format!(
                    "bulk, {}: {} issued → visible on all 3",
                    v.label,
                    count(v.n)
                ),
                "≤ 0.25 s, ≥ 800 k/s issued (200k)".into(),
                format!(
                    "issued in {} ({}), visible on all 3 after {}",
                    secs(Some(v.issue_secs)),
                    rate(v.issue_per_sec),
                    secs(v.converge_secs)
                ),
                na(),
            ]);
        }
    }
    latency_pushes(r, rows);
    if let Some(l) = &r.latency
        && let Some(d) = &l.burst1_propagation_ms
    {
        rows.push([
            format!(
                "latency with `delta_burst` = 1 (one immediate push per window), {} one at a time",
                l.n
            ),
            "(comparison)".into(),
            format!("p50 {} · p99 {} · max {}", ms(d.p50), ms(d.p99), ms(d.max)),
            na(),
        ]);
    }
}

/// The side-by-side table: figure, target, pidmesh, Erlang/OTP.
pub fn summary_table(r: &Results) -> String {
    let erl = r.erlang.as_ref().and_then(|o| o.result.as_ref());
    let na = || "—".to_string();
    let mut rows: Vec<[String; 4]> = Vec::new();
    if r.bulk.is_some() || erl.is_some() {
        let bulk = r.bulk.as_ref();
        let p = |f: &dyn Fn(&BulkResult) -> String| bulk.map_or_else(|| "not run".to_string(), f);
        let n = bulk.map_or_else(|| erl.map_or(0, |e| e.pg_bulk_n as usize), |b| b.n);
        rows.push([
            format!(
                "bulk: {} registrations on one node → visible on all 3",
                count(n)
            ),
            "≤ 0.5 s (200k)".into(),
            p(&|b| secs(b.converge_secs)),
            erl.map_or_else(na, |e| {
                format!(
                    "{} (pg, {} joins)",
                    secs(Some(e.pg_bulk_secs)),
                    count(e.pg_bulk_n as usize)
                )
            }),
        ]);
        rows.push([
            "bulk: registrations issued per second (one node)".into(),
            "—".into(),
            p(&|b| rate(b.issue_per_sec)),
            erl.map_or_else(na, |e| {
                format!(
                    "{} (pg:join), {} (global:register_name)",
                    rate(e.pg_joins_per_sec),
                    rate(e.global_regs_per_sec)
                )
            }),
        ]);
        if let Some(e) = erl {
            rows.push([
                format!(
                    "unique names: {} registered back to back → visible on all 3",
                    count(e.global_n as usize)
                ),
                "—".into(),
                "see bulk (pidmesh names are unique names, like global's)".into(),
                e.global_visible_secs
                    .map_or_else(na, |v| format!("{} (global)", secs(Some(v)))),
            ]);
        }
        rows.push([
            "wire: payload bytes per registration per receiving node, amortized over bulk (all classes, all senders)".into(),
            "≤ 40 B".into(),
            p(&|b| {
                format!(
                    "{:.1} B ({:.1} B of it in delta batches; {:.1} B per registration for the 2 copies)",
                    b.wire_bytes_per_registration / 2.0,
                    b.delta_bytes_per_registration_per_peer,
                    b.wire_bytes_per_registration
                )
            }),
            na(),
        ]);
        rows.push([
            format!("lookup on a replica holding {} names", count(n)),
            "—".into(),
            p(&|b| ns(b.lookup_ns)),
            erl.map_or_else(na, |e| {
                format!(
                    "{} (global:whereis_name, {} names)",
                    ns(e.global_whereis_ns),
                    count(e.global_n as usize)
                )
            }),
        ]);
        rows.push([
            format!(
                "members_of a 1-member group among {} such groups, scattered order, on the members' node",
                count(n)
            ),
            "—".into(),
            p(&|b| b.members_of_random_ns.map_or_else(na, ns)),
            erl.map_or_else(na, |e| {
                match e.pg_get_members_ns_node2 {
                    Some(n2) => format!(
                        "{} (pg:get_members; {} on another node)",
                        ns(e.pg_get_members_ns),
                        ns(n2)
                    ),
                    None => format!("{} (pg:get_members)", ns(e.pg_get_members_ns)),
                }
            }),
        ]);
        rows.push([
            "members_of one warm 3-member group on a replica (cache-resident; no pg figure of this shape)".into(),
            "—".into(),
            p(&|b| ns(b.members_of_ns)),
            na(),
        ]);
    }
    if let Some(c) = &r.call {
        let us = |x: f64| ms(x / 1e3);
        rows.push([
            format!("call round trip, local ({} one at a time)", c.n),
            "—".into(),
            format!("p50 {} · p99 {}", us(c.local_us.p50), us(c.local_us.p99)),
            na(),
        ]);
        rows.push([
            format!("call round trip, remote ({} one at a time)", c.n),
            "p99 ≤ 1 ms".into(),
            format!("p50 {} · p99 {}", us(c.remote_us.p50), us(c.remote_us.p99)),
            na(),
        ]);
        rows.push([
            format!(
                "calls per second between two nodes ({} callers)",
                c.concurrency
            ),
            "≥ 100 k/s".into(),
            format!(
                "{} (local: {}; load avg {})",
                rate(c.remote_calls_per_sec),
                rate(c.local_calls_per_sec),
                c.load_avg
            ),
            na(),
        ]);
    }
    if let Some(c) = &r.catchup {
        rows.push([
            format!("lookup on a node holding {} names", count(c.n)),
            "≤ 50 ns (1M)".into(),
            ns(c.lookup_ns),
            na(),
        ]);
    }
    if let Some(l) = &r.latency {
        let d = &l.propagation_ms;
        rows.push([
            format!(
                "latency: register returned → visible on all 3 ({} one at a time)",
                l.n
            ),
            "p99 ≤ 5 ms".into(),
            format!("p50 {} · p99 {} · max {}", ms(d.p50), ms(d.p99), ms(d.max)),
            na(),
        ]);
    }
    bulk_ways_rows(r, &mut rows);
    if let Some(c) = &r.catchup {
        rows.push([
            format!(
                "catch-up: new node joins a cluster of {} entries → holds them all",
                count(c.n)
            ),
            "≤ 1 s (1M)".into(),
            if c.catchup_secs.is_some() {
                secs(c.catchup_secs)
            } else {
                format!(
                    "did not converge ({} of {} held)",
                    count(c.final_entries),
                    count(c.n)
                )
            },
            na(),
        ]);
        rows.extend(catchup_signal_rows(c));
        rows.push([
            format!(
                "catch-up: filling the cluster ({} on one node → all 3)",
                count(c.n)
            ),
            "—".into(),
            format!(
                "{} issued, {} converged",
                secs(Some(c.fill_issue_secs)),
                secs(c.fill_converge_secs)
            ),
            na(),
        ]);
    }
    if let Some(f) = &r.failure {
        rows.push([
            format!(
                "failure: node killed → its {} names gone everywhere (median of {})",
                f.names, f.names_gone_secs.n
            ),
            "—".into(),
            if f.names_gone_secs.n > 0 {
                format!(
                    "{} (max {})",
                    secs(Some(f.names_gone_secs.p50)),
                    secs(Some(f.names_gone_secs.max))
                )
            } else {
                "did not converge".into()
            },
            na(),
        ]);
    }
    if let Some(h) = &r.heal {
        rows.push([
            format!(
                "heal: partition heal → one winner everywhere, {} contested names",
                count(h.n)
            ),
            "—".into(),
            format!(
                "{} (all losers removed: {})",
                secs(h.one_winner_secs),
                secs(h.clean_secs)
            ),
            na(),
        ]);
    }
    if let Some(m) = &r.memory {
        for p in &m.points {
            rows.push([
                format!("memory per entry, registry of {} (heap)", count(p.entries)),
                if p.entries >= 1_000_000 {
                    "≤ 150 B (1M)".into()
                } else {
                    "—".into()
                },
                format!("{:.1} B", p.heap_bytes_per_entry),
                na(),
            ]);
        }
    }
    lookup_rows(r, &mut rows);
    rows.extend(node_memory_rows(r));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| figure | target | pidmesh ({}, `{}`) | Erlang/OTP{} |",
        r.transport.label(),
        r.preset,
        erl.map_or_else(String::new, |e| format!(" {}", release(e)))
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for row in rows {
        let _ = writeln!(s, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
    }
    if let Some(sc) = &r.scale {
        scale_table(&mut s, sc);
    }
    s.push_str(&peers_and_wire(r));
    if !r.errors.is_empty() {
        let _ = writeln!(s);
        for (k, v) in &r.errors {
            let _ = writeln!(s, "- **{k} failed**: {v}");
        }
    }
    match &r.erlang {
        Some(o) if o.result.is_none() => {
            let _ = writeln!(s, "\nerlang: not available ({})", o.note);
        }
        _ => {}
    }
    s
}

/// The last three components of a path (`bench/erlang/run.sh`), so no machine's directory
/// layout ends up in the committed report.
fn short_path(p: &Path) -> String {
    let parts: Vec<_> = p.components().collect();
    let tail = &parts[parts.len().saturating_sub(3)..];
    tail.iter()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The whole `BENCHMARKS.md`.
pub fn benchmarks_md(r: &Results) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "<!-- Generated by `pidmesh-bench all` from docs/bench/results.json; edit crates/pidmesh-bench/src/report.rs, not this file. -->\n"
    );
    let _ = writeln!(
        s,
        "End-to-end figures of pidmesh on real sockets (3 nodes on 127.0.0.1 in one process unless \
         said otherwise), of the simulator at scale, and of Erlang/OTP's `pg` and `global` and of ractor_cluster's `pg` on the \
         same workloads in the same run. These are measurements, not guarantees: on a shared \
         2-core machine they move by tens of percent from run to run.\n"
    );
    let _ = writeln!(s, "## How to run\n");
    let _ = writeln!(
        s,
        "```sh\ncargo run --release -p pidmesh-bench -- all\n```\n"
    );
    let _ = writeln!(
        s,
        "It runs every scenario, then rewrites this file, `docs/bench/results.json` and the plots \
         in `docs/bench/`; the raw run goes to `bench-results/` (not committed). One scenario: \
         `cargo run --release -p pidmesh-bench -- <bulk|wire|groups|latency|catch-up|failure|heal|scale|erlang|ractor> \
         [--transport quic|tcp] [--size N] [--preset lan|local]`. `--smoke` uses tiny sizes \
         (CI runs `cargo run -p pidmesh-bench -- all --smoke --out <tmp>`). The Erlang comparison \
         runs `bench/erlang/run.sh` (or `$PIDMESH_ERLANG_BENCH`) when it exists and Erlang is \
         installed; otherwise it is reported as not available. The ractor_cluster comparison \
         builds and runs `bench/ractor` (its own Cargo project) with cargo (`--no-ractor` skips \
         it; smoke runs skip it unless `--ractor` is given). Each scenario is described in the \
         module docs of `crates/pidmesh-bench/src/scenario/`.\n"
    );
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} |", m.cpu);
    let _ = writeln!(s, "| logical CPUs (nproc) | {} |", m.nproc);
    let _ = writeln!(s, "| kernel | Linux {} |", m.kernel);
    let _ = writeln!(s, "| rustc | {} |", m.rustc);
    let load = |l: Option<[f64; 3]>| {
        l.map_or_else(
            || "unknown".to_string(),
            |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
        )
    };
    let _ = writeln!(
        s,
        "| load average (1/5/15 min) at start → end | {} → {} |",
        load(m.loadavg_start),
        load(m.loadavg_end)
    );
    let _ = writeln!(s, "| build | {} |", m.profile);
    let _ = writeln!(s, "| date | {} |", m.date);
    let _ = writeln!(s, "| command | `{}` |", r.command);
    let _ = writeln!(s, "| whole run | {:.0} s |", r.total_secs);
    let _ = writeln!(s, "\n## Results\n");
    let _ = writeln!(
        s,
        "pidmesh over {} with the `{}` preset (delta batch window {} ms). \"Payload bytes\" are \
         what pidmesh handed to its transport (framing, QUIC and TLS overhead not included).\n",
        r.transport.label(),
        r.preset,
        if r.preset == "local" { 1 } else { 2 }
    );
    s.push_str(&summary_table(r));
    let _ = writeln!(
        s,
        "\nWhere the time goes, and why some figures miss their target: \
         [docs/bench/notes.md](docs/bench/notes.md) (written by hand after a run, so it may lag \
         behind these figures)."
    );
    let _ = writeln!(
        s,
        "\nMicro benchmarks (criterion; not run by this harness, figures in the notes): \
         `cargo bench -p pidmesh-proto --bench registry` (lookup of a unique name and of a group \
         at 10k/100k/1M entries, lookup while another thread writes, local register/unregister, \
         delta join, snapshot chunk encode/decode) and `cargo bench -p pidmesh-crdt --bench \
         ormap` (the CRDT alone)."
    );
    let _ = writeln!(s, "\n## Plots\n");
    let _ = writeln!(
        s,
        "Entries visible per node over time, {} registrations issued on node 0 (and Erlang's `pg` \
         joins when available):\n\n![convergence](docs/bench/convergence.svg)\n",
        r.bulk.as_ref().map_or(0, |b| b.n)
    );
    let _ = writeln!(
        s,
        "Single-registration propagation (register returned → visible on all 3 nodes), CDF:\n\n\
         ![latency CDF](docs/bench/latency_cdf.svg)\n"
    );
    let _ = writeln!(
        s,
        "A new node catching up with the cluster:\n\n![catch-up](docs/bench/catchup.svg)\n"
    );
    let _ = writeln!(
        s,
        "Simulated convergence time (virtual) against cluster size:\n\n![scale](docs/bench/scale.svg)\n"
    );
    lookup_plot_section(r, &mut s);
    let _ = writeln!(s, "## Details\n");
    if let Some(b) = &r.bulk {
        let _ = writeln!(
            s,
            "- bulk: names like `{}`, empty metadata; issue took {:.2} s ({}); each node reached \
             all entries at {}.",
            b.name_example,
            b.issue_secs,
            rate(b.issue_per_sec),
            b.node_secs
                .iter()
                .enumerate()
                .map(|(i, x)| format!("node {i} {}", secs(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (i, by) in b.bytes_by_node.iter().enumerate() {
            let _ = writeln!(
                s,
                "- bulk bytes sent by node {i}: delta {} B, sync {} B, membership {} B ({} messages)",
                by.delta, by.sync, by.membership, by.messages
            );
        }
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            s,
            "- latency: the `register` call itself took p50 {:.1} µs, p99 {:.1} µs.",
            l.register_call_us.p50, l.register_call_us.p99
        );
    }
    if let Some(c) = &r.catchup {
        let _ = writeln!(
            s,
            "- catch-up: the newcomer saw every member after {}, held its first entry after {}; \
             the transfer cost {} B of sync payload; process RSS with 4 nodes holding {} entries \
             each: {}.",
            secs(c.join_secs),
            secs(c.first_entry_secs),
            c.bytes.sync,
            count(c.n),
            c.rss_mib
                .map_or_else(|| "unknown".to_string(), |m| format!("{m:.0} MiB"))
        );
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(
            s,
            "- failure: the survivors declared the victim down after p50 {} (SWIM); names gone \
             after p50 {}; {} trial(s) did not converge.",
            secs(Some(f.member_down_secs.p50)),
            secs(Some(f.names_gone_secs.p50)),
            f.not_converged
        );
    }
    if let Some(h) = &r.heal {
        let _ = writeln!(
            s,
            "- heal: the split took {:.1} s to detect; after the heal every node saw all 3 members \
             again after {}; winners by node: {:?}; entries per node at the end: {:?}.",
            h.split_secs,
            h.members_secs.map_or_else(
                || "(not yet when last checked: the names settled first)".to_string(),
                |v| secs(Some(v))
            ),
            h.winners,
            h.final_entries
        );
        if let Some(line) = heal_phases_line(h) {
            let _ = writeln!(s, "{line}");
        }
    }
    if let Some(o) = &r.erlang {
        match &o.result {
            Some(e) => {
                let load =
                    |l: Option<f64>| l.map_or_else(|| "unknown".into(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    s,
                    "- Erlang/OTP {}: script `{}` ran in {:.0} s (1-minute load average {} at its start, {} at its end).",
                    release(e),
                    short_path(&o.script),
                    o.wall_secs,
                    load(e.loadavg_1m_start),
                    load(e.loadavg_1m_end)
                );
            }
            None => {
                let _ = writeln!(s, "- erlang: not available ({}).", o.note);
            }
        }
    }
    s.push_str(&node_memory_details(r));
    s.push_str(&ractor_details(r));
    let _ = writeln!(
        s,
        "\nWall time per scenario: {}.",
        r.wall_secs
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

/// The lookup scenario's rows: per size, pidmesh borrowed and owned against the std map.
fn lookup_rows(r: &Results, rows: &mut Vec<[String; 4]>) {
    let Some(l) = &r.lookup else { return };
    let load =
        |x: Option<[f64; 3]>| x.map_or_else(|| "?".to_string(), |[a, _, _]| format!("{a:.2}"));
    for p in &l.points {
        rows.push([
            format!(
                "random lookup among {} names, same run as a std `HashMap<String, Entry>` (load avg {} → {})",
                count(p.entries),
                load(l.loadavg_start),
                load(l.loadavg_end)
            ),
            if p.entries >= 1_000_000 {
                "borrowed ≤ 0.7× std borrowed (1M)".into()
            } else {
                "—".into()
            },
            format!(
                "borrowed {} vs std borrowed {} ({:.2}×); owned {} vs std cloned {} ({:.2}×){}",
                ns(p.pidmesh_borrowed_ns),
                ns(p.std_borrowed_ns),
                p.borrowed_ratio(),
                ns(p.pidmesh_owned_ns),
                ns(p.std_cloned_ns),
                p.owned_ratio(),
                lookup_context(p)
            ),
            "—".into(),
        ]);
    }
}

/// The concurrent baselines and the stage profile of one lookup point, where measured.
fn lookup_context(p: &crate::scenario::lookup::LookupPoint) -> String {
    let mut out = String::new();
    if let (Some(locked), Some(dash)) = (p.std_locked_ns, p.dashmap_ns) {
        let _ = write!(
            out,
            "; std behind an `RwLock` {}, `DashMap` {} (borrowed {:.2}× of it)",
            ns(locked),
            ns(dash),
            p.pidmesh_borrowed_ns / dash
        );
    }
    if let Some([hash, lock, table, record]) = p.stages_ns {
        let _ = write!(
            out,
            "; read path cut after hash / lock / table / record: {} / {} / {} / {}",
            ns(hash),
            ns(lock),
            ns(table),
            ns(record)
        );
    }
    out
}

/// The lookup plot's paragraph, when the run measured lookups.
fn lookup_plot_section(r: &Results, s: &mut String) {
    if r.lookup.is_none() {
        return;
    }
    let _ = writeln!(
        s,
        "Random unique-name lookup against registry size, pidmesh (owned `lookup`, borrowed \
         `with_lookup`), a std `HashMap<String, Entry>` (borrowed `get`, cloned, and behind an \
         `RwLock`) and a `DashMap<String, Entry>`, probed with the same names in the same order, \
         in the same run:\n\n![lookup](docs/bench/lookup.svg)\n"
    );
}

/// Summary rows of the node-memory scenario: one per role (origin, first replica).
fn node_memory_rows(r: &Results) -> Vec<[String; 4]> {
    let Some(m) = &r.node_memory else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for role in ["origin", "replica"] {
        if let Some(p) = m.processes.iter().find(|p| p.role == role) {
            rows.push([
                format!(
                    "memory per entry, whole node process ({role}), {} names of {} B (RSS growth; peak)",
                    count(m.n),
                    m.name_bytes
                ),
                "≤ 200 B (1M)".into(),
                format!(
                    "{:.0} B (peak {:.0} B; heap {:.0} B)",
                    p.rss_per_entry, p.peak_per_entry, p.heap_per_entry
                ),
                "—".into(),
            ]);
        }
    }
    rows
}

/// Detail lines of the node-memory scenario and of this run's own resident set.
fn node_memory_details(r: &Results) -> String {
    let mut s = String::new();
    if let Some(m) = &r.node_memory {
        let _ = writeln!(
            s,
            "- node-memory: {} node processes over QUIC on 127.0.0.1; the origin registered {} \
             names in {:.2} s, all held them after {}; read {:.0} s later. Per process (MiB): {}.",
            m.processes.len(),
            count(m.n),
            m.register_secs,
            secs(m.converge_secs),
            m.settle_secs,
            m.processes
                .iter()
                .map(|p| {
                    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
                    format!(
                        "{} RSS {:.0} → {:.0}, peak {:.0}, heap {:.0} → {:.0}",
                        p.role,
                        mib(p.rss_start),
                        mib(p.rss_end),
                        mib(p.rss_peak),
                        mib(p.heap_start),
                        mib(p.heap_end)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(a) = &r.rss_after {
        let _ = writeln!(
            s,
            "- this process's resident set after each scenario (RSS / peak so far, MiB): {}.",
            a.iter()
                .map(|(k, (rss, hwm))| format!("{k} {rss:.0} / {hwm:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// The scale rows: formation and convergence times, bytes per node while membership formed (by
/// kind) and after, what the seed (node 0) sent, and wall time.
fn scale_table(s: &mut String, sc: &ScaleResult) {
    let four = |b: Option<[f64; 4]>| {
        b.map_or_else(
            || "—".to_string(),
            |b| format!("{:.0} / {:.0} / {:.0} / {:.0}", b[0], b[1], b[2], b[3]),
        )
    };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| simulated nodes | names per node | membership formed (virtual) | all entries everywhere (virtual) | bytes per node while forming: SWIM / push-pull / delta / sync | seed (node 0) while forming: SWIM / push-pull | bytes per node converging: membership / delta / sync (push-pull) | wall time (formed) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for p in &sc.points {
        let seed = p
            .seed_formation_bytes
            .map_or_else(|| "—".to_string(), |b| format!("{:.0} / {:.0}", b[0], b[1]));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} ({:.0}) | {:.1} s ({}){} |",
            count(p.nodes),
            p.names_per_node,
            secs(p.formed_secs),
            secs(p.converge_secs),
            four(p.formation_bytes_per_node),
            seed,
            p.bytes_per_node[0],
            p.bytes_per_node[1],
            p.bytes_per_node[2],
            p.converge_push_pull_per_node.unwrap_or(0.0),
            p.wall_secs,
            p.formed_wall_secs
                .map_or_else(|| "—".to_string(), |w| format!("{w:.1} s")),
            p.note
                .as_ref()
                .map_or_else(String::new, |n| format!(" ({n})"))
        );
    }
    for n in &sc.skipped {
        let _ = writeln!(
            s,
            "| {} | — | skipped | skipped | — | — | — | — |",
            count(*n)
        );
    }
}

/// The catch-up rows added with multi-holder catch-up: the node's own "caught up" signal and
/// the apply rate, with who streamed and the load average.
fn catchup_signal_rows(c: &CatchupResult) -> Vec<[String; 4]> {
    let Some(at) = c.signal_secs else {
        return Vec::new();
    };
    let load = c.load_avg.map_or_else(
        || "unknown".to_string(),
        |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]),
    );
    let streamed = c
        .sync_bytes_by_node
        .iter()
        .enumerate()
        .map(|(i, b)| format!("n{i} {:.1} MB", *b as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        [
            "catch-up: the newcomer reports itself caught up (`Registry::caught_up`)".into(),
            "≤ 1 s (1M)".into(),
            format!(
                "{} ({} entries held then)",
                secs(Some(at)),
                count(c.signal_entries.unwrap_or(0))
            ),
            "—".to_string(),
        ],
        [
            "catch-up: entries applied per second (first entry → all held)".into(),
            "—".into(),
            format!(
                "{}; sync bytes sent: {streamed}; load avg {load}",
                c.entries_per_sec.map_or_else(|| "—".to_string(), rate)
            ),
            "—".to_string(),
        ],
    ]
}

/// How many one-at-a-time registrations of the `latency` scenario left within the `register`
/// call (the rest waited for the flush timer), with the default push rule and with
/// `delta_burst` = 1: a count, so it does not depend on the machine's load.
fn latency_pushes(r: &Results, rows: &mut Vec<[String; 4]>) {
    let Some(l) = &r.latency else { return };
    let Some(now) = l.pushed_at_once else { return };
    let burst1 = l
        .burst1_pushed_at_once
        .map_or_else(String::new, |b| format!(" (`delta_burst` = 1: {b})"));
    rows.push([
        format!(
            "latency: registrations pushed within the `register` call, {} one at a time",
            l.n
        ),
        "(count)".into(),
        format!("{now} of {}{burst1}", l.n),
        "—".to_string(),
    ]);
}

/// The heal's timeline (contact, then per node: both sides' claims held, entry count settled),
/// for results that have it.
fn heal_phases_line(h: &HealResult) -> Option<String> {
    let p = h.phases.as_ref()?;
    let ms = |v: &Option<f64>| v.map_or_else(|| "—".to_string(), |x| format!("{:.0} ms", x * 1e3));
    let list = |v: &[Option<f64>]| v.iter().map(ms).collect::<Vec<_>>().join(" / ");
    let after = |v: Option<f64>| match (v, h.contact_secs) {
        (Some(x), Some(c)) => format!("{:.0} ms", (x - c) * 1e3),
        _ => "—".to_string(),
    };
    Some(format!(
        "- heal timeline (from the heal; 1-minute load {}): first contact across the link {}; \
         one winner everywhere {} after contact, all losers removed {} after contact; per node \
         0 / 1 / 2: all members seen at {}, registry first changed at {}, last changed at {}, \
         conflicts resolved {:?}.",
        p.loadavg_1m
            .map_or_else(|| "unknown".to_string(), |l| format!("{l:.2}")),
        ms(&h.contact_secs),
        after(h.one_winner_secs),
        after(h.clean_secs),
        list(&p.members_back_secs),
        list(&p.first_change_secs),
        list(&p.last_change_secs),
        p.conflicts_resolved
    ))
}
