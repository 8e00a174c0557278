//! A fresh clone of the repository, alone in a temporary directory, passes its unit tests and
//! the vector tests: the project carries all of its test data, and nothing it reads lies outside
//! the checkout (a user's clone has nothing beside it).
//!
//! It clones the committed tree (`HEAD`, what CI checks out), so uncommitted changes are not in
//! it; `NAS_TEST_CLONE_REV=<rev>` checks another revision instead (an older one shows what this
//! test catches).
//!
//! This is its own test binary, not a module of `integration`: it runs cargo, which keeps both
//! cores busy for a while, and cargo runs test binaries one after another, so it cannot starve
//! the integration tests' timeouts. The nested cargo builds into its own target directory under
//! `target/tmp` (seeded with hard links to the outer build's dependencies, and kept between
//! runs, so only this crate is built; never the outer target directory, whose artifacts for
//! this crate it would overwrite).

use std::path::Path;
use std::process::{Command, Output};

#[test]
fn a_fresh_clone_passes_its_unit_and_vector_tests() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rev = match std::env::var("NAS_TEST_CLONE_REV") {
        Ok(rev) => rev,
        Err(_) => match git(here, &["rev-parse", "HEAD"]) {
            Ok(head) => head,
            Err(why) => {
                // A source archive has no history to clone; say so instead of failing.
                eprintln!("skipped: {} is not a git checkout ({why})", here.display());
                return;
            }
        },
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let clone = tmp.path().join("nats-account-server");
    let clone_str = clone.to_str().expect("UTF-8 temp path");
    let here_str = here.to_str().expect("UTF-8 checkout path");
    git(tmp.path(), &["clone", "--quiet", here_str, clone_str]).expect("git clone");
    git(&clone, &["checkout", "--quiet", "--detach", &rev]).expect("git checkout");
    let beside: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("temp dir listing")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside.len(), 1, "the clone must be alone: {beside:?}");

    let tmpdir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmpdir.join("fresh-clone-target");
    seed(tmpdir.parent().expect("target/tmp has a parent"), &target);
    let unit = cargo_test(&clone, &target, &["--lib"]);
    let vectors = cargo_test(&clone, &target, &["--test", "integration", "vectors::"]);
    assert!(unit > 0, "no unit test ran in the clone");
    assert!(vectors > 0, "no vector test ran in the clone");
}

/// Seeds the clone's target directory with hard links to the outer build's artifacts, once:
/// the dependencies are built with the same profile, so the clone's cargo finds them fresh and
/// builds only this crate (minutes less on a clean CI machine). This crate's own artifacts
/// cannot clash: cargo names them by a hash of the package's path, which differs in the clone.
/// Files cargo replaces (uplifted binaries) are unlinked first, never written through, and the
/// build lock is left out so the two cargos never share it.
fn seed(outer: &Path, target: &Path) {
    let debug = outer.join("debug");
    if target.exists() || !debug.is_dir() {
        return;
    }
    std::fs::create_dir_all(target).expect("creating the clone's target dir");
    let linked = Command::new("cp")
        .arg("-al")
        .arg(&debug)
        .arg(target.join("debug"))
        .status()
        .is_ok_and(|s| s.success());
    if linked {
        let _ = std::fs::remove_file(target.join("debug").join(".cargo-lock"));
    } else {
        // Not fatal: the clone's cargo then builds everything itself.
        let _ = std::fs::remove_dir_all(target.join("debug"));
    }
}

/// Runs `git args` in `dir`; its trimmed stdout, or why it failed.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `cargo test <args>` in the clone, offline and with the committed lock file; panics with the
/// output unless every test passed. Returns how many tests passed.
fn cargo_test(clone: &Path, target: &Path, args: &[&str]) -> usize {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out: Output = Command::new(cargo)
        .arg("test")
        .args(["--offline", "--locked", "--quiet"])
        .args(args)
        .current_dir(clone)
        .env("CARGO_TARGET_DIR", target)
        // The same profile as the outer build (so the seeded dependencies are fresh), without
        // an incremental cache: this target directory only builds, runs and forgets.
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("running cargo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`cargo test {}` failed in a fresh clone at {}:\n{text}",
        args.join(" "),
        clone.display()
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum()
}
