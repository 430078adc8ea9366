//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/*`) through the same checks the fuzz
//! targets run (`fuzz/src/checks.rs`, included below), on the stable toolchain, so CI covers
//! every seed and every crash that was turned into a regression seed.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::path::PathBuf;

fn seeds_of(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let read = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed directory {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = read
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no seeds in {}: the replay would test nothing",
        dir.display()
    );
    files
}

fn replay(target: &str) {
    let files = seeds_of(target);
    let mut valid = 0;
    for f in &files {
        let data = std::fs::read(f).expect("readable seed");
        let checked = std::panic::catch_unwind(|| checks::check(target, &data));
        match checked {
            Ok(Some(true)) => valid += 1,
            Ok(Some(false)) => {}
            Ok(None) => panic!("unknown fuzz target {target}"),
            Err(_) => panic!(
                "seed {} broke a property of {target} (see the panic above)",
                f.display()
            ),
        }
    }
    // Seeds that all fail to decode would only test the error path.
    assert!(
        valid > 0,
        "none of the {} seeds of {target} decodes",
        files.len()
    );
    println!("{target}: {} seeds, {valid} decode", files.len());
}

#[test]
fn every_target_has_a_seed_directory() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds exists") {
        let name = entry.expect("readable directory entry").file_name();
        let name = name.to_string_lossy();
        // Targets that drive a whole node are replayed by pidmesh-proto's fuzz_seeds test.
        assert!(
            checks::TARGETS.contains(&name.as_ref())
                || checks::NODE_TARGETS.contains(&name.as_ref()),
            "fuzz/seeds/{name} belongs to no known target"
        );
    }
    for t in checks::TARGETS {
        assert!(!seeds_of(t).is_empty());
    }
}

#[test]
fn decode_datagram_seeds() {
    replay("decode_datagram");
}

#[test]
fn decode_delta_seeds() {
    replay("decode_delta");
}

#[test]
fn decode_sync_seeds() {
    replay("decode_sync");
}

#[test]
fn delta_join_seeds() {
    replay("delta_join");
}

#[test]
fn prefilled_replica_is_consistent() {
    // The fixture the delta_join checks start from: 5 adds, one of them removed.
    let m = checks::prefilled();
    checks::assert_invariants(&m);
    assert_eq!(m.len(), 4);
    let [a, b] = checks::actors();
    assert_eq!(m.context().max(&a), 4);
    assert_eq!(m.context().max(&b), 2);
}
