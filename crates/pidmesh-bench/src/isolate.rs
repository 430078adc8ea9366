//! `all` runs every scenario in a process of its own.
//!
//! A scenario's clusters are gone when it returns, but the memory they used is not: the
//! allocator keeps most freed pages (glibc returns little of what its arenas held), so in one
//! process each large scenario started from the high-water mark of the ones before, and the
//! run's peak was close to the sum of the large scenarios rather than the largest one. A child
//! process per scenario gives everything back to the system when it exits: the run's peak is
//! the largest scenario's own.
//!
//! The child is this binary run as `pidmesh-bench <scenario> <the same flags>
//! --result-json <file>`; it writes its [`Results`] there, and the parent takes over every
//! figure it produced.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::report::Results;

/// The flag that makes a single-scenario run write its results to a file (and nothing else).
pub const RESULT_FLAG: &str = "--result-json";

/// Runs `name` in a child process with the flags of this run (`args` without the scenario),
/// and merges its figures into `results`. A child that fails to start, crashes or writes no
/// results is recorded as that scenario's error.
pub async fn run_child(name: &str, args: &[String], results: &mut Results) {
    eprintln!("== {name} (own process)");
    let t = std::time::Instant::now();
    if let Err(e) = child(name, args, results).await {
        eprintln!("   {name} FAILED: {e:#}");
        results.errors.insert(name.to_string(), format!("{e:#}"));
        results
            .wall_secs
            .insert(name.to_string(), t.elapsed().as_secs_f64());
    }
}

async fn child(name: &str, args: &[String], results: &mut Results) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("current executable")?;
    let file =
        std::env::temp_dir().join(format!("pidmesh-bench-{}-{name}.json", std::process::id()));
    let status = tokio::process::Command::new(&exe)
        .arg(name)
        .args(args)
        .arg(RESULT_FLAG)
        .arg(&file)
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("spawn {}", exe.display()))?;
    let merged = merge_file(&file, results);
    let _ = std::fs::remove_file(&file);
    // A failed scenario exits non-zero but still wrote its error: keep that one.
    merged.with_context(|| format!("the {name} process ended with {status} and no results"))
}

/// Takes every figure of the results in `file` that `results` does not have yet, and adds its
/// per-scenario maps (wall times, errors, resident sets).
fn merge_file(file: &Path, results: &mut Results) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let theirs: Value = serde_json::from_str(&text).context("parse the child's results")?;
    let mut ours = serde_json::to_value(&*results).context("serialize results")?;
    merge(&mut ours, theirs);
    *results = serde_json::from_value(ours).context("merged results")?;
    Ok(())
}

/// The run-wide fields stay the parent's; maps are merged key by key; any other field the
/// child filled in and the parent did not is taken.
fn merge(ours: &mut Value, theirs: Value) {
    const RUN_WIDE: [&str; 6] = [
        "command",
        "machine",
        "transport",
        "preset",
        "smoke",
        "total_secs",
    ];
    let (Value::Object(ours), Value::Object(theirs)) = (ours, theirs) else {
        return;
    };
    for (k, v) in theirs {
        if RUN_WIDE.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        match (ours.get_mut(&k), v) {
            (Some(Value::Object(mine)), Value::Object(add)) if k != "erlang" => {
                mine.extend(add);
            }
            (Some(slot), v) if slot.is_null() => *slot = v,
            (None, v) => {
                ours.insert(k, v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_figures_are_taken_and_maps_merged() {
        let mut ours = serde_json::json!({
            "command": "all", "total_secs": 1.0, "heal": null, "bulk": {"n": 1},
            "wall_secs": {"bulk": 2.0}, "errors": {}, "rss_after": null
        });
        let theirs = serde_json::json!({
            "command": "heal", "total_secs": 9.0, "heal": {"n": 5}, "bulk": null,
            "wall_secs": {"heal": 3.0}, "errors": {"heal": "x"}, "rss_after": {"heal": [1.0, 2.0]}
        });
        merge(&mut ours, theirs);
        assert_eq!(ours["command"], "all");
        assert_eq!(ours["total_secs"], 1.0);
        assert_eq!(ours["heal"]["n"], 5);
        assert_eq!(ours["bulk"]["n"], 1);
        assert_eq!(ours["wall_secs"]["bulk"], 2.0);
        assert_eq!(ours["wall_secs"]["heal"], 3.0);
        assert_eq!(ours["errors"]["heal"], "x");
        assert_eq!(ours["rss_after"]["heal"][1], 2.0);
    }
}
