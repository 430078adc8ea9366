//! Fuzz target: decode a `DeltaMsg`, turn it into a CRDT delta and join it into a pre-filled
//! replica; the CRDT invariants must hold afterwards (see `src/checks.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::delta_join(data);
});
