//! Fuzz target `node_messages`: see `fuzz/src/node_checks.rs` for the input format and the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/node_checks.rs"]
mod node_checks;

fuzz_target!(|data: &[u8]| {
    node_checks::node_messages(data);
});
