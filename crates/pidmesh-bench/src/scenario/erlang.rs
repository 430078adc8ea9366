//! **erlang**: the same workloads on Erlang/OTP's `pg` and `global`, for comparison.
//!
//! Runs `bench/erlang/run.sh <bulk_n> <global_n> <lookup_iters>` (or the script named by the
//! `PIDMESH_ERLANG_BENCH` environment variable), which starts a 3-node Erlang cluster and prints
//! one JSON object line on stdout. A missing script, a missing Erlang, a failure, a timeout or
//! unparsable output all yield "not available" with the reason: never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The figures the Erlang script reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErlangResult {
    /// `erlang:system_info(otp_release)` (a string or a number, as the script prints it).
    pub otp_release: serde_json::Value,
    /// `pg` joins issued.
    pub pg_bulk_n: u64,
    /// First join issued → all visible on all 3 nodes (s).
    pub pg_bulk_secs: f64,
    /// Joins per second on the issuing node.
    pub pg_joins_per_sec: f64,
    /// Nanoseconds per `pg:get_members`.
    pub pg_get_members_ns: f64,
    /// `global` registrations issued.
    pub global_n: u64,
    /// `global:register_name` calls per second.
    pub global_regs_per_sec: f64,
    /// Nanoseconds per `global:whereis_name`.
    pub global_whereis_ns: f64,
    /// `pg:get_members` on node 2 (members remote), if reported.
    #[serde(default)]
    pub pg_get_members_ns_node2: Option<f64>,
    /// First `global:register_name` issued → all names visible on all 3 nodes (s), if reported.
    #[serde(default)]
    pub global_visible_secs: Option<f64>,
    /// The Erlang side's 1-minute load average when its run started, if reported.
    #[serde(default)]
    pub loadavg_1m_start: Option<f64>,
    /// The Erlang side's 1-minute load average when its run ended, if reported.
    #[serde(default)]
    pub loadavg_1m_end: Option<f64>,
    /// Optional convergence curve: `[ms, visible on node 2, visible on node 3]`.
    #[serde(default)]
    pub pg_curve: Option<Vec<Vec<f64>>>,
}

/// The OTP release as text.
pub fn release(r: &ErlangResult) -> String {
    match &r.otp_release {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The outcome of the Erlang scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErlangOutcome {
    /// The figures, when the script ran.
    pub result: Option<ErlangResult>,
    /// Why there are none (or a note on how it ran).
    pub note: String,
    /// The script that was (or would have been) run.
    pub script: PathBuf,
    /// Wall-clock seconds the script took.
    pub wall_secs: f64,
}

/// Where the script is: `$PIDMESH_ERLANG_BENCH`, else `bench/erlang/run.sh` under `root`.
pub fn script_path(root: &Path) -> PathBuf {
    std::env::var_os("PIDMESH_ERLANG_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("bench/erlang/run.sh"))
}

/// Parses the last line of `stdout` that is a JSON object of the expected shape.
pub fn parse(stdout: &str) -> Result<ErlangResult, String> {
    super::parse_last_json(stdout)
}

/// Runs the script; never fails.
pub async fn run(
    root: &Path,
    bulk_n: usize,
    global_n: usize,
    lookup_iters: usize,
    timeout: Duration,
) -> ErlangOutcome {
    let script = script_path(root);
    let t = Instant::now();
    let outcome = |result, note: String| ErlangOutcome {
        result,
        note,
        script: script.clone(),
        wall_secs: t.elapsed().as_secs_f64(),
    };
    if !script.is_file() {
        return outcome(None, format!("script not found at {}", script.display()));
    }
    let child = tokio::process::Command::new("bash")
        .arg(&script)
        .args([
            bulk_n.to_string(),
            global_n.to_string(),
            lookup_iters.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Err(_) => return outcome(None, format!("timed out after {timeout:?}")),
        Ok(Err(e)) => return outcome(None, format!("could not run: {e}")),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return outcome(
            None,
            format!(
                "exited with {} ({})",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        );
    }
    match parse(&stdout) {
        Ok(r) => outcome(Some(r), "ran".to_string()),
        Err(e) => outcome(None, e),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_last_json_line() {
        let out = "starting nodes\n{\"otp_release\":\"27\",\"pg_bulk_n\":10,\"pg_bulk_secs\":0.5,\
                   \"pg_joins_per_sec\":20.0,\"pg_get_members_ns\":100,\"global_n\":5,\
                   \"global_regs_per_sec\":3.5,\"global_whereis_ns\":80,\
                   \"pg_curve\":[[0,0,0],[5,10,10]]}\n";
        let r = parse(out).expect("parses");
        assert_eq!(r.otp_release, "27");
        assert_eq!(super::release(&r), "27");
        assert_eq!(r.pg_curve.map(|c| c.len()), Some(2));
        assert!(parse("nothing here").is_err());
    }
}
