//! Fuzz target: `pidmesh_wire::decode::<SyncMsg>` on arbitrary bytes; whatever decodes must
//! re-encode canonically and decode back to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::roundtrip::<pidmesh_wire::SyncMsg>(data);
});
