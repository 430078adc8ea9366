//! **node-memory**: what a running node costs per entry, measured as a process.
//!
//! Three nodes, each an OS process of its own (this binary re-executed as `__node`, see
//! `node_process.rs`), talk QUIC with mutual TLS on 127.0.0.1 (certificates from a throwaway
//! development CA, written as DER files to a temporary directory). Once the cluster has formed,
//! each process's resident set is read from `/proc/<pid>/status`. Then node 0, the origin,
//! registers N names of 16 bytes (`n/00000000000042`, empty metadata) with one process, keeping
//! every `Registration` guard as an application would; the other two replicate them. When all
//! three hold N entries and a settling pause has passed (two anti-entropy rounds), the resident
//! set (`VmRSS`), its peak (`VmHWM`) and the heap bytes the process's allocations asked for (the
//! binary's counting global allocator) are read again. Reported per process: bytes per entry
//! of the resident-set growth, of the peak over the starting resident set, and of the heap
//! growth (what the allocator keeps beyond it is the gap between the two).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pidmesh_transport::tls::dev_ca::DevCa;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::Settings;

/// One node process, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// `origin` (registered the names) or `replica`.
    pub role: String,
    /// Resident set once the cluster formed, before any registration (bytes).
    pub rss_start: u64,
    /// Resident set once every node held N entries and the pause passed (bytes).
    pub rss_end: u64,
    /// Peak resident set of the process's whole life (`VmHWM`, bytes).
    pub rss_peak: u64,
    /// Heap bytes allocated (asked for and not freed) at the start and at the end.
    pub heap_start: u64,
    /// See `heap_start`.
    pub heap_end: u64,
    /// `(rss_end - rss_start) / N`.
    pub rss_per_entry: f64,
    /// `(rss_peak - rss_start) / N`.
    pub peak_per_entry: f64,
    /// `(heap_end - heap_start) / N`.
    pub heap_per_entry: f64,
}

/// What the node-memory scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeMemoryResult {
    /// Entries registered on the origin.
    pub n: usize,
    /// Bytes of every name.
    pub name_bytes: usize,
    /// Seconds the origin took to register them.
    pub register_secs: f64,
    /// Seconds from the first registration until every node held N entries (`None`: not within
    /// the limit).
    pub converge_secs: Option<f64>,
    /// Seconds waited after convergence before the last reading.
    pub settle_secs: f64,
    /// Node 0 (origin) first, then the replicas.
    pub processes: Vec<ProcessMemory>,
}

/// One child process and its pipes.
struct NodeProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl NodeProc {
    async fn spawn(
        certs: &Path,
        name: &str,
        seed: Option<&str>,
        preset: &str,
    ) -> anyhow::Result<(Self, String)> {
        let exe = std::env::current_exe().context("current executable")?;
        // `PIDMESH_BENCH_NODE_WRAPPER="heaptrack -o /tmp/x"` runs each node under a profiler.
        let wrapper = std::env::var("PIDMESH_BENCH_NODE_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(prog) => {
                let mut c = Command::new(prog);
                c.args(words.map(|w| w.replace("{name}", name))).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("__node")
            .args(["--name", name, "--preset", preset])
            .arg("--certs")
            .arg(certs);
        if let Some(s) = seed {
            cmd.args(["--seed", s]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let mut p = NodeProc {
            child,
            stdin,
            stdout,
            pid,
        };
        // A profiler wrapping the node may print its own lines first.
        for _ in 0..64 {
            let line = p.read_line().await?;
            if let Some(addr) = line.strip_prefix("addr ") {
                return Ok((p, addr.to_string()));
            }
        }
        bail!("{name}: no address in its first 64 lines")
    }

    async fn read_line(&mut self) -> anyhow::Result<String> {
        self.stdout
            .next_line()
            .await?
            .context("node process closed its output")
    }

    async fn ask(&mut self, cmd: &str) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        self.read_line().await
    }

    /// (entries, members, heap bytes).
    async fn stats(&mut self) -> anyhow::Result<(usize, usize, u64)> {
        let line = self.ask("stats").await?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["stats", e, m, h] => Ok((e.parse()?, m.parse()?, h.parse()?)),
            _ => bail!("unexpected answer {line:?}"),
        }
    }

    /// (VmRSS, VmHWM) in bytes.
    fn rss(&self) -> anyhow::Result<(u64, u64)> {
        status_rss(self.pid).with_context(|| format!("read /proc/{}/status", self.pid))
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `VmRSS` and `VmHWM` of process `pid`, in bytes (Linux).
pub fn status_rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Certificates for `names` from a new development CA, as DER files in a fresh directory.
fn write_certs(names: &[String]) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pidmesh-bench-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let ca = DevCa::new("pidmesh bench CA").context("dev CA")?;
    std::fs::write(dir.join("ca.der"), ca.cert().as_ref())?;
    for name in names {
        let cert = ca.issue(name).context("node certificate")?;
        let leaf = cert.chain.first().context("empty chain")?;
        std::fs::write(dir.join(format!("{name}.der")), leaf.as_ref())?;
        std::fs::write(dir.join(format!("{name}.key")), cert.key.secret_der())?;
    }
    Ok(dir)
}

/// Runs the scenario with `nodes` processes (at least 2).
///
/// # Errors
/// The processes did not start, the cluster did not form, or a registration failed.
pub async fn run(s: &Settings, n: usize, nodes: usize) -> anyhow::Result<NodeMemoryResult> {
    let names: Vec<String> = (0..nodes.max(2)).map(|i| format!("mem-{i}")).collect();
    let certs = write_certs(&names)?;
    let result = measure(s, n, &names, &certs).await;
    let _ = std::fs::remove_dir_all(&certs);
    result
}

async fn measure(
    s: &Settings,
    n: usize,
    names: &[String],
    certs: &Path,
) -> anyhow::Result<NodeMemoryResult> {
    let (first, seed) = NodeProc::spawn(certs, &names[0], None, &s.preset).await?;
    let mut procs = vec![first];
    for name in &names[1..] {
        procs.push(
            NodeProc::spawn(certs, name, Some(&seed), &s.preset)
                .await?
                .0,
        );
    }
    let k = procs.len();
    // Formed: every process sees every member.
    let t = Instant::now();
    loop {
        let mut all = true;
        for p in &mut procs {
            all &= p.stats().await?.1 == k;
        }
        if all {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the {k} node processes did not form a cluster within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settle = 2 * s.config().sync_interval;
    tokio::time::sleep(settle).await;
    let mut start = Vec::new();
    for p in &mut procs {
        let heap = p.stats().await?.2;
        start.push((p.rss()?.0, heap));
    }

    let t0 = Instant::now();
    let line = procs[0].ask(&format!("register {n}")).await?;
    let register_secs: f64 = line
        .strip_prefix("registered ")
        .with_context(|| format!("origin: {line:?}"))?
        .parse()?;
    let limit = s.converge_limit(n);
    let mut converge = None;
    while t0.elapsed() < limit {
        let mut all = true;
        for p in &mut procs {
            all &= p.stats().await?.0 >= n;
        }
        if all {
            converge = Some(t0.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(settle).await;
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n.max(1) as f64;
    let mut processes = Vec::new();
    for (i, p) in procs.iter_mut().enumerate() {
        let (entries, _, heap_end) = p.stats().await?;
        let (rss_end, rss_peak) = p.rss()?;
        let (rss_start, heap_start) = start[i];
        eprintln!(
            "  node-memory: {} holds {entries}: rss {:.1} B/entry, peak {:.1} B/entry, heap {:.1} B/entry",
            names[i],
            per(rss_end, rss_start),
            per(rss_peak, rss_start),
            per(heap_end, heap_start)
        );
        processes.push(ProcessMemory {
            role: if i == 0 { "origin" } else { "replica" }.to_string(),
            rss_start,
            rss_end,
            rss_peak,
            heap_start,
            heap_end,
            rss_per_entry: per(rss_end, rss_start),
            peak_per_entry: per(rss_peak, rss_start),
            heap_per_entry: per(heap_end, heap_start),
        });
    }
    for p in procs {
        p.quit().await;
    }
    Ok(NodeMemoryResult {
        n,
        name_bytes: crate::node_process::name16(0).len(),
        register_secs,
        converge_secs: converge,
        settle_secs: settle.as_secs_f64(),
        processes,
    })
}
