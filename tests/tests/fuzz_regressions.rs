//! Replays the fuzzing inputs kept in the repository through the fuzz targets' bodies
//! (`futu_authd_tests::fuzz`, the same code `fuzz/fuzz_targets/*.rs` run): every seed of
//! `fuzz/corpus/<target>/` and every saved crash of `fuzz/regressions/<target>/`. A crash
//! the fuzzer once found therefore fails `make test` until it is fixed, and stays fixed.
//!
//! Files whose names start with `.` (such as `.gitkeep`) or `README` are not inputs.

use std::path::{Path, PathBuf};

use futu_authd_tests::fuzz::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .join("fuzz")
}

/// The input files in `dir`, by name (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

/// Runs target `name` over its seeds and saved crashes; fails naming every input that
/// panicked (each panic's message is printed above by the panic hook).
fn replay(name: &str) {
    let run = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let corpus = fuzz_dir().join("corpus").join(name);
    let seeds = inputs(&corpus);
    assert!(
        !seeds.is_empty(),
        "no seed input in {}: the fuzz corpus is missing",
        corpus.display()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {name} panicked on {} of {} inputs:\n  {}",
        failed.len(),
        seeds.len() + regressions.len(),
        failed.join("\n  ")
    );
    println!(
        "{name}: {} seeds and {} saved crashes replayed",
        seeds.len(),
        regressions.len()
    );
}

#[test]
fn frame_decoder_survives_its_corpus_and_every_saved_crash() {
    replay("frame_decoder");
}

#[test]
fn keys_json_survives_its_corpus_and_every_saved_crash() {
    replay("keys_json");
}

#[test]
fn ledger_replay_survives_its_corpus_and_every_saved_crash() {
    replay("ledger_replay");
}

/// The targets `make fuzz` runs (fuzz/Cargo.toml), the functions here and the corpus
/// directories name the same three targets, so none is fuzzed without being replayed.
#[test]
fn every_fuzz_target_has_a_body_a_corpus_and_a_replay() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("read fuzz/Cargo.toml");
    let mut in_manifest: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|n| *n != "futu-authd-fuzz")
        .collect();
    in_manifest.sort_unstable();
    let mut bodies: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    bodies.sort_unstable();
    assert_eq!(in_manifest, bodies, "fuzz/Cargo.toml [[bin]]s and futu_authd_tests::fuzz::TARGETS");
    for name in bodies {
        assert!(
            fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")).is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
        assert!(
            fuzz_dir().join("regressions").join(name).is_dir(),
            "fuzz/regressions/{name}/ is missing (keep it, with a .gitkeep, even when empty)"
        );
    }
}
