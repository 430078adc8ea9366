//! The benchmark scenarios, one module each.

pub mod bulk;
pub mod bulk_variants;
pub mod call;
pub mod catchup;
pub mod erlang;
pub mod failure;
pub mod groups;
pub mod heal;
pub mod latency;
pub mod lookup;
pub mod memory;
pub mod node_memory;
pub mod ractor;
pub mod scale;
pub mod wire;

/// Parses the last line of a peer benchmark's `stdout` that is a JSON object of the expected
/// shape (the Erlang and ractor peers print their figures as one JSON line at the end).
pub fn parse_last_json<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, String> {
    let mut last_err = "no JSON object line on stdout".to_string();
    for line in stdout.lines().rev() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(r) => return Ok(r),
            Err(e) => last_err = format!("unparsable JSON line: {e}"),
        }
    }
    Err(last_err)
}
