//! Replays the fuzzing inputs kept in the repository through the fuzz targets' bodies
//! (`futu_authd_tests::fuzz`, the same code `fuzz/fuzz_targets/*.rs` run): every seed of
//! `fuzz/corpus/<target>/` and every saved crash of `fuzz/regressions/<target>/`. A crash
//! the fuzzer once found therefore fails `make test` until it is fixed, and stays fixed.
//!
//! Seeds run in this process. Each saved crash runs in a child process of its own (this
//! test binary again, [`replay_one_input_in_this_process`]) with its address space capped
//! at [`CHILD_MEMORY`] and [`CHILD_DEADLINE`] to finish, as libFuzzer caps them: an input
//! that aborts, exhausts memory or hangs fails its target's test, named, instead of taking
//! the whole test run (or the machine) down.
//!
//! Files whose names start with `.` (such as `.gitkeep`) or `README` are not inputs. A seed
//! whose name starts with `bad-` is meant to be refused (or reported damaged); every other
//! seed must still be valid in the current format ([`check_valid_seed`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futu_authd_tests::fuzz::{check_valid_seed, target, TARGETS};

/// The variables that make [`replay_one_input_in_this_process`] replay one input.
const CHILD_TARGET: &str = "FUTU_FUZZ_REPLAY_TARGET";
const CHILD_FILE: &str = "FUTU_FUZZ_REPLAY_FILE";

/// The address space a child replaying a saved crash may use (libFuzzer's default RSS
/// limit is 2 GiB; a debug test binary needs more address space than it touches).
const CHILD_MEMORY: u64 = 4 << 30;

/// How long a child may take for its one input.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

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
    for file in &seeds {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(format!("{} (panicked: see above)", file.display()));
        }
    }
    for file in &regressions {
        if let Err(why) = replay_in_child(name, file) {
            failed.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {name} failed on {} of {} inputs:\n  {}",
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

/// Runs target `name` on `file` in a child process (see the module documentation); `Err`
/// says how it ended and what it printed.
fn replay_in_child(name: &str, file: &Path) -> Result<(), String> {
    let out = tempfile::tempfile().expect("a temporary file for the child's output");
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "replay_one_input_in_this_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TARGET, name)
        .env(CHILD_FILE, file)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup the output file"))
        .stderr(out.try_clone().expect("dup the output file"))
        .spawn()
        .expect("start a child test process");
    let until = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = {
        use std::io::{Read, Seek};
        let mut out = out;
        let mut text = String::new();
        out.rewind().expect("rewind the output file");
        let _ = out.read_to_string(&mut text);
        text
    };
    // What the target printed, without libtest's own lines (`--nocapture` puts the first
    // line printed right after "test NAME ... ").
    let said: Vec<&str> = said
        .lines()
        .map(|l| {
            l.strip_prefix("test replay_one_input_in_this_process ... ")
                .unwrap_or(l)
        })
        .filter(|l| {
            let l = l.trim();
            !(l.is_empty()
                || l.starts_with("running ")
                || l.starts_with("test result:")
                || l.starts_with("failures:")
                || l == "FAILED"
                || l == "replay_one_input_in_this_process"
                || l.starts_with("---- replay_one_input_in_this_process"))
        })
        .collect();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{s}\n      {}", said.join("\n      "))),
        None => Err(format!("still running after {CHILD_DEADLINE:?} (a hang)")),
    }
}

/// Not a test of its own: a child started by `replay_in_child` replays the one input its
/// environment names, with its address space capped; without those variables it does
/// nothing.
#[test]
fn replay_one_input_in_this_process() {
    let (Some(name), Some(file)) = (std::env::var_os(CHILD_TARGET), std::env::var_os(CHILD_FILE)) else {
        return;
    };
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_AS, CHILD_MEMORY, CHILD_MEMORY).expect("cap the address space");
    let name = name.to_str().expect("a target name is ASCII");
    let run = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", Path::new(&file).display()));
    run(&data);
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

#[test]
fn layer_request_survives_its_corpus_and_every_saved_crash() {
    replay("layer_request");
}

/// A seed not named `bad-…` is still a valid input in the current format: a change of the
/// wire format, of keys.json or of the ledger journal must come with new seeds, or the
/// fuzzer would start from inputs that only reach the error paths.
#[test]
fn every_seed_not_named_bad_is_valid_in_the_current_format() {
    let mut stale = Vec::new();
    for (name, _) in TARGETS {
        for file in inputs(&fuzz_dir().join("corpus").join(name)) {
            let file_name = file.file_name().unwrap_or_default().to_string_lossy();
            if file_name.starts_with("bad-") {
                continue;
            }
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Err(why) = check_valid_seed(name, &data) {
                stale.push(format!("{}: {why}", file.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "seeds that are no longer valid (remake them in the current format, or name them bad-…):\n  {}",
        stale.join("\n  ")
    );
}

/// The targets `make fuzz` runs (fuzz/Cargo.toml), the functions here and the corpus
/// directories name the same targets, so none is fuzzed without being replayed.
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
    assert_eq!(
        in_manifest, bodies,
        "fuzz/Cargo.toml [[bin]]s and futu_authd_tests::fuzz::TARGETS"
    );
    for name in bodies {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
        assert!(
            fuzz_dir().join("regressions").join(name).is_dir(),
            "fuzz/regressions/{name}/ is missing (keep it, with a .gitkeep, even when empty)"
        );
    }
}
