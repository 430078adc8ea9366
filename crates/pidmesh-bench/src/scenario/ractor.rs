//! **ractor**: the same workloads on `ractor`'s `pg` process groups, distributed by
//! `ractor_cluster`, for comparison in the same run.
//!
//! Builds and runs the peer in `bench/ractor/` (its own Cargo project, not a workspace member)
//! with `cargo run --release --manifest-path bench/ractor/Cargo.toml -- <bulk_n>
//! <lookup_iters>`, or runs the binary named by `PIDMESH_RACTOR_BENCH` when set. The peer
//! starts three node processes on 127.0.0.1 (ractor's `pg` is a process-wide table, so three
//! node servers in one process would share it), has node 0 join N groups of one member each,
//! measures the issue rate and the time until every node sees every group, then
//! `pg::get_members` of one group in the scattered order of pidmesh's `members_of_random_ns`
//! on the members' node and on another. It prints one JSON object line.
//!
//! No cargo, a failed build, a failure, a timeout or unparsable output all yield "not
//! available" with the reason: never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The figures the ractor peer reports (see `bench/ractor/src/controller.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RactorResult {
    /// ractor / ractor_cluster version.
    pub ractor_version: String,
    /// How the nodes ran.
    #[serde(default)]
    pub topology: String,
    /// Who joined the groups.
    #[serde(default)]
    pub members: String,
    /// Groups joined on node 0 (one member each).
    pub bulk_n: u64,
    /// Node 0's issuing loop (s).
    pub issue_secs: f64,
    /// `pg::join` calls per second on node 0.
    pub joins_per_sec: f64,
    /// First join → every group visible on all 3 nodes (s).
    pub bulk_secs: f64,
    /// When each node held every group (s).
    #[serde(default)]
    pub node_secs: Vec<f64>,
    /// ns per `pg::get_members` on node 0 (members local), scattered order.
    pub get_members_ns: f64,
    /// The same on node 1 (members remote).
    pub get_members_ns_node2: f64,
    /// Calls per timing round.
    #[serde(default)]
    pub lookup_iters: u64,
    /// 1-minute load average when the peer started.
    #[serde(default)]
    pub loadavg_1m_start: Option<f64>,
    /// 1-minute load average when it ended.
    #[serde(default)]
    pub loadavg_1m_end: Option<f64>,
    /// `[ms, visible on node 1, visible on node 2]`.
    #[serde(default)]
    pub curve: Option<Vec<Vec<f64>>>,
}

/// The outcome of the ractor scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RactorOutcome {
    /// The figures, when the peer ran.
    pub result: Option<RactorResult>,
    /// Why there are none (or how it ran).
    pub note: String,
    /// Seconds the build and run took.
    pub wall_secs: f64,
}

/// The command to run: `$PIDMESH_RACTOR_BENCH` (a built peer binary), else `cargo run`.
fn command(root: &Path) -> (tokio::process::Command, String) {
    if let Some(bin) = std::env::var_os("PIDMESH_RACTOR_BENCH") {
        let what = PathBuf::from(&bin).display().to_string();
        return (tokio::process::Command::new(bin), what);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = root.join("bench/ractor/Cargo.toml");
    let mut c = tokio::process::Command::new(cargo);
    c.args(["run", "--quiet", "--release", "--manifest-path"])
        .arg(&manifest)
        .arg("--");
    (
        c,
        "cargo run --release --manifest-path bench/ractor/Cargo.toml".to_string(),
    )
}

/// Parses the last line of `stdout` that is a JSON object of the expected shape.
pub fn parse(stdout: &str) -> Result<RactorResult, String> {
    super::parse_last_json(stdout)
}

/// Builds (if needed) and runs the peer; never fails.
pub async fn run(
    root: &Path,
    bulk_n: usize,
    lookup_iters: usize,
    timeout: Duration,
) -> RactorOutcome {
    let t = Instant::now();
    let outcome = |result, note: String| RactorOutcome {
        result,
        note,
        wall_secs: t.elapsed().as_secs_f64(),
    };
    let (mut cmd, what) = command(root);
    if std::env::var_os("PIDMESH_RACTOR_BENCH").is_none()
        && !root.join("bench/ractor/Cargo.toml").is_file()
    {
        return outcome(None, "bench/ractor/Cargo.toml not found".to_string());
    }
    let child = cmd
        .args([bulk_n.to_string(), lookup_iters.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Err(_) => return outcome(None, format!("timed out after {timeout:?} ({what})")),
        Ok(Err(e)) => return outcome(None, format!("could not run {what}: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return outcome(
            None,
            format!(
                "{what} exited with {} ({})",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        );
    }
    match parse(&String::from_utf8_lossy(&out.stdout)) {
        Ok(r) => outcome(Some(r), format!("ran ({what})")),
        Err(e) => outcome(None, e),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_peer_output() {
        let out = "log line\n{\"peer\":\"ractor_cluster pg\",\"ractor_version\":\"0.16.5\",\
                   \"topology\":\"3 OS processes\",\"members\":\"one actor\",\"bulk_n\":2000,\
                   \"issue_secs\":0.004,\"joins_per_sec\":500000.0,\"bulk_secs\":0.25,\
                   \"node_secs\":[0.004,0.2,0.25],\"get_members_ns\":180.5,\
                   \"get_members_ns_node2\":190.25,\"lookup_iters\":10000,\"poll_ms\":5,\
                   \"loadavg_1m_start\":0.5,\"loadavg_1m_end\":null,\
                   \"curve\":[[0.0,0.0,0.0],[250.0,2000.0,2000.0]]}\n";
        let r = parse(out).expect("parses");
        assert_eq!(r.ractor_version, "0.16.5");
        assert_eq!(r.bulk_n, 2000);
        assert_eq!(r.bulk_secs, 0.25);
        assert_eq!(r.get_members_ns, 180.5);
        assert_eq!(r.get_members_ns_node2, 190.25);
        assert_eq!(r.node_secs.len(), 3);
        assert_eq!(r.loadavg_1m_start, Some(0.5));
        assert_eq!(r.loadavg_1m_end, None);
        assert_eq!(r.curve.map(|c| c.len()), Some(2));
        assert!(parse("no json").is_err());
        assert!(parse("{\"bulk_n\": 1}").is_err());
    }
}
