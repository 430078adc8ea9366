//! The controller: starts three node processes (this binary with `node ...`), drives them over
//! their stdin/stdout, times the workloads and prints one JSON object.
//!
//! It is not a cluster member and never touches the ractor_cluster sockets; it only sends
//! commands down pipes. While node 0 issues the joins it polls nodes 1 and 2 every `poll_ms`
//! for how many of the groups they see.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The ractor and ractor_cluster version (pinned in Cargo.toml).
pub const RACTOR_VERSION: &str = "0.16.5";

/// What the run measured; printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which peer this is.
    pub peer: &'static str,
    /// ractor / ractor_cluster version.
    pub ractor_version: &'static str,
    /// How the nodes run.
    pub topology: &'static str,
    /// Who joins the groups.
    pub members: &'static str,
    /// Groups joined (one member each) on node 0.
    pub bulk_n: usize,
    /// Node 0's issuing loop (s).
    pub issue_secs: f64,
    /// Joins per second on node 0.
    pub joins_per_sec: f64,
    /// First join issued → every group visible on all 3 nodes (s).
    pub bulk_secs: f64,
    /// When each node held every group (s): node 0 at the end of its loop.
    pub node_secs: [f64; 3],
    /// ns per `pg::get_members` of a 1-member group in scattered order, on node 0 (members
    /// local), median of 3 rounds.
    pub get_members_ns: f64,
    /// The same on node 1 (members remote).
    pub get_members_ns_node2: f64,
    /// Calls per round.
    pub lookup_iters: usize,
    /// Poll period of the visibility sampler (ms).
    pub poll_ms: u64,
    /// 1-minute load average at the start.
    pub loadavg_1m_start: Option<f64>,
    /// 1-minute load average at the end.
    pub loadavg_1m_end: Option<f64>,
    /// `[ms since the first join, groups visible on node 1, on node 2]`, at most 250 points.
    pub curve: Vec<[f64; 3]>,
}

/// The first field of /proc/loadavg.
pub fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    index: usize,
}

impl Node {
    fn start(
        index: usize,
        port: u16,
        connect: &[u16],
        peers: usize,
    ) -> Result<Self, Box<dyn Error>> {
        let exe = std::env::current_exe()?;
        let connect: Vec<String> = connect.iter().map(u16::to_string).collect();
        let mut child = Command::new(exe)
            .args([
                "node".to_string(),
                index.to_string(),
                port.to_string(),
                peers.to_string(),
                connect.join(","),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Node {
            child,
            stdin,
            lines,
            index,
        })
    }

    fn send(&mut self, cmd: &str) -> Result<(), Box<dyn Error>> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn read(&mut self, timeout: Duration) -> Result<String, Box<dyn Error>> {
        self.lines
            .recv_timeout(timeout)
            .map_err(|e| format!("node{}: no reply within {timeout:?} ({e})", self.index).into())
    }

    /// Reads a reply `<word> <number> ...` and returns the numbers.
    fn expect(&mut self, word: &str, timeout: Duration) -> Result<Vec<f64>, Box<dyn Error>> {
        let line = self.read(timeout)?;
        parse_reply(&line, word)
            .ok_or_else(|| format!("node{}: expected {word:?}, got {line:?}", self.index).into())
    }
}

/// Parses a node's reply `<word> <number>...`; `None` if it is another reply.
pub fn parse_reply(line: &str, word: &str) -> Option<Vec<f64>> {
    let mut it = line.split_whitespace();
    if it.next()? != word {
        return None;
    }
    it.map(|x| x.parse::<f64>().ok()).collect()
}

/// Keeps at most `max` points, evenly spaced, always the first and the last.
pub fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max || max < 2 {
        return v.to_vec();
    }
    let last = v.len() - 1;
    let mut idx: Vec<usize> = (0..max).map(|k| k * last / (max - 1)).collect();
    idx.dedup();
    idx.into_iter().map(|i| v[i]).collect()
}

fn free_ports(n: usize) -> Result<Vec<u16>, Box<dyn Error>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?)
}

/// Runs the whole measurement.
///
/// # Errors
/// A node did not start, a reply did not come, or the groups did not converge in `timeout`.
pub fn run(
    n: usize,
    iters: usize,
    per_group: bool,
    timeout: Duration,
) -> Result<Report, Box<dyn Error>> {
    let poll = Duration::from_millis(5);
    let loadavg_1m_start = loadavg_1m();
    let ports = free_ports(3)?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        // Node i dials every node before it: one session per pair, a full mesh.
        nodes.push(Node::start(i, ports[i], &ports[..i], 2)?);
    }
    let result = measure(&mut nodes, n, iters, per_group, poll, timeout);
    for node in &mut nodes {
        let _ = node.send("quit");
    }
    for node in &mut nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(node.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Only our own child, by its handle.
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    let mut report = result?;
    report.loadavg_1m_start = loadavg_1m_start;
    report.loadavg_1m_end = loadavg_1m();
    Ok(report)
}

fn measure(
    nodes: &mut [Node],
    n: usize,
    iters: usize,
    per_group: bool,
    poll: Duration,
    timeout: Duration,
) -> Result<Report, Box<dyn Error>> {
    let reply = Duration::from_secs(60);
    for node in nodes.iter_mut() {
        let line = node.read(Duration::from_secs(90))?;
        if line != "ready" {
            return Err(format!("node{}: expected ready, got {line:?}", node.index).into());
        }
    }
    eprintln!("ractor peer: 3 nodes ready; {n} joins on node0");
    let t0 = Instant::now();
    nodes[0].send(&format!(
        "join {n}{}",
        if per_group { " per-group" } else { "" }
    ))?;
    let mut issue: Option<f64> = None;
    let mut seen: [Option<f64>; 2] = [None, None];
    let mut curve = Vec::new();
    loop {
        nodes[1].send(&format!("visible {n}"))?;
        nodes[2].send(&format!("visible {n}"))?;
        let c1 = nodes[1].expect("visible", reply)?[0];
        let c2 = nodes[2].expect("visible", reply)?[0];
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        curve.push([ms, c1, c2]);
        for (k, c) in [c1, c2].into_iter().enumerate() {
            if seen[k].is_none() && c >= n as f64 {
                seen[k] = Some(ms / 1e3);
            }
        }
        if issue.is_none()
            && let Ok(line) = nodes[0].lines.try_recv()
        {
            let ns = parse_reply(&line, "joined")
                .and_then(|v| v.first().copied())
                .ok_or_else(|| format!("node0: expected joined, got {line:?}"))?;
            issue = Some(ns / 1e9);
        }
        if let (Some(_), Some(_), Some(_)) = (issue, seen[0], seen[1]) {
            break;
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "not converged after {timeout:?}: issued {issue:?}, visible {c1} / {c2} of {n}"
            )
            .into());
        }
        std::thread::sleep(poll);
    }
    let issue = issue.unwrap_or(f64::NAN);
    let node_secs = [
        issue,
        seen[0].unwrap_or(f64::NAN),
        seen[1].unwrap_or(f64::NAN),
    ];
    let bulk_secs = node_secs.iter().copied().fold(0.0, f64::max);
    for node in nodes.iter_mut() {
        node.send(&format!("count {n}"))?;
        let c = node.expect("count", reply)?[0];
        if c != n as f64 {
            return Err(format!(
                "node{}: {c} of {n} groups have their one member",
                node.index
            )
            .into());
        }
    }
    let mut lookup = |i: usize| -> Result<f64, Box<dyn Error>> {
        nodes[i].send(&format!("lookup {n} {iters}"))?;
        let v = nodes[i].expect("lookup", Duration::from_secs(300))?;
        if v.get(1).copied().unwrap_or(1.0) != 0.0 {
            return Err(format!("node{i}: get_members found no member {} times", v[1]).into());
        }
        Ok(v[0])
    };
    let get_members_ns = lookup(0)?;
    let get_members_ns_node2 = lookup(1)?;
    Ok(Report {
        peer: "ractor_cluster pg",
        ractor_version: RACTOR_VERSION,
        topology: "3 OS processes on 127.0.0.1, full mesh of ractor_cluster TCP sessions",
        members: if per_group {
            "one actor per group on node 0 (spawned before the clock starts)"
        } else {
            "one actor on node 0 joins every group"
        },
        bulk_n: n,
        issue_secs: issue,
        joins_per_sec: n as f64 / issue.max(1e-9),
        bulk_secs,
        node_secs,
        get_members_ns,
        get_members_ns_node2,
        lookup_iters: iters,
        poll_ms: poll.as_millis() as u64,
        loadavg_1m_start: None,
        loadavg_1m_end: None,
        curve: thin(&curve, 250),
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_reply, thin};

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply("visible 12", "visible"), Some(vec![12.0]));
        assert_eq!(
            parse_reply("lookup 250.5 0", "lookup"),
            Some(vec![250.5, 0.0])
        );
        assert_eq!(parse_reply("ready", "visible"), None);
        assert_eq!(parse_reply("visible x", "visible"), None);
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let v: Vec<usize> = (0..1000).collect();
        let t = thin(&v, 250);
        assert!(t.len() <= 250);
        assert_eq!(t.first(), Some(&0));
        assert_eq!(t.last(), Some(&999));
    }
}
