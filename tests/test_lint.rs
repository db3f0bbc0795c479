//! Lints and packaging facts that the other tests cannot see.
//!
//! - `expansion_is_clean_under_clippy_pedantic`: `#[exclusive]` on every shape of function, in
//!   the fixture crate `tests/lint/` (lib, bins, tests), passes `cargo clippy` with warnings,
//!   `clippy::all` and `clippy::pedantic` denied; and a negative control (the fixture's `control`
//!   feature: a pedantic lint in an annotated function's own body) fails with exactly that lint,
//!   so clippy is running, the deny level is active, and the expansion does not hide user code.
//! - `rust_version_is_the_ci_toolchain`: the declared `rust-version` is not above the toolchain
//!   running this test, so the MSRV is one CI builds with.
//! - `runtime_pins_the_macro_to_the_workspace_version`: `lockmacro-runtime` depends on exactly
//!   the `lockmacro` of the same release.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The string value of `key = "..."` in `[section]` of a Cargo.toml (a line-based reading that
/// is enough for this workspace's manifests).
fn toml_string(manifest: &str, section: &str, key: &str) -> Option<String> {
    let header = format!("[{section}]");
    let mut in_section = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == header;
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    None
}

/// `(major, minor)` of a version like `1.95`, `1.95.0` or `1.95.0-beta.3`.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split(['.', '-']);
    let mut next = || -> u32 {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a version: {version:?}"))
    };
    (next(), next())
}

#[test]
fn rust_version_is_the_ci_toolchain() {
    let manifest = read("Cargo.toml");
    let declared = toml_string(&manifest, "workspace.package", "rust-version")
        .expect("[workspace.package] rust-version in Cargo.toml");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run `{rustc} --version`: {e}"));
    assert!(out.status.success(), "`{rustc} --version` failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let running = stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `rustc --version` output: {stdout:?}"));
    assert!(
        major_minor(running) >= major_minor(&declared),
        "rust-version = {declared:?} in Cargo.toml, but this test was built and run with rustc \
         {running}: the declared MSRV must be a toolchain CI actually builds with"
    );
}

#[test]
fn runtime_pins_the_macro_to_the_workspace_version() {
    let workspace = read("Cargo.toml");
    let version = toml_string(&workspace, "workspace.package", "version")
        .expect("[workspace.package] version in Cargo.toml");
    let macro_manifest = read("lockmacro/Cargo.toml");
    assert_eq!(
        toml_string(&macro_manifest, "package", "version.workspace").as_deref(),
        Some("true"),
        "lockmacro/Cargo.toml must take its version from the workspace"
    );
    let runtime = read("lockmacro-runtime/Cargo.toml");
    let dep = runtime
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("lockmacro ") || l.starts_with("lockmacro="))
        .expect("lockmacro dependency in lockmacro-runtime/Cargo.toml");
    let requirement = dep
        .split_once("version")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .unwrap_or_else(|| panic!("no version requirement in `{dep}`"));
    assert_eq!(
        requirement,
        format!("={version}"),
        "lockmacro-runtime must pin lockmacro to exactly the workspace version: `{dep}`"
    );
}

/// `cargo clippy` on the fixture, all targets, warnings and pedantic denied on the command line
/// too (the fixture also denies them itself).
fn clippy(target: &Path, features: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.arg("clippy")
        .arg("--manifest-path")
        .arg(root().join("tests/lint/Cargo.toml"))
        .arg("--all-targets")
        .args(features)
        .args(["--", "-D", "warnings", "-D", "clippy::pedantic"])
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_TERM_COLOR", "never");
    cmd.output().expect("run cargo clippy")
}

#[test]
fn expansion_is_clean_under_clippy_pedantic() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let installed = Command::new(&cargo)
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "`cargo clippy` is not available: this test needs clippy (`rustup component add clippy`)"
    );
    // Next to this package's own target directory: `<target>/lint`.
    let target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("lint");

    let start = Instant::now();
    let clean = clippy(&target, &[]);
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert!(
        clean.status.success(),
        "cargo clippy on tests/lint failed: a lint in the fixture (or caused by the \
         expansion):\n{stderr}"
    );
    eprintln!("clean run: {:.1} s", start.elapsed().as_secs_f64());

    // Negative control: the same run with a pedantic lint in two annotated bodies (sync and
    // async) must fail, with that lint and nothing else.
    let start = Instant::now();
    let control = clippy(&target, &["--features", "control"]);
    let stderr = String::from_utf8_lossy(&control.stderr);
    assert!(
        !control.status.success(),
        "the negative control passed: clippy is not running, or not at the pedantic level, or \
         the expansion hides the function body from it:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let mut locations = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(message) = line.strip_prefix("error: ") else {
            continue;
        };
        if message.starts_with("could not compile") {
            continue;
        }
        assert_eq!(
            message, "casting `u64` to `u32` may truncate the value",
            "the negative control failed for another reason:\n{stderr}"
        );
        if let Some(at) = lines.get(i + 1).and_then(|l| l.trim().strip_prefix("--> ")) {
            locations.push(at.to_owned());
        }
    }
    locations.sort();
    locations.dedup();
    assert_eq!(
        locations.len(),
        2,
        "expected clippy::cast_possible_truncation in both control functions, got \
         {locations:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("clippy::cast_possible_truncation"),
        "{stderr}"
    );
    eprintln!("control run: {:.1} s", start.elapsed().as_secs_f64());
}
