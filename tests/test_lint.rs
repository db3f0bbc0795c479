//! Lints and packaging facts that the other tests cannot see.
//!
//! - `rust_version_is_the_ci_toolchain`: the declared `rust-version` is not above the toolchain
//!   running this test, so the MSRV is one CI builds with.
//! - `runtime_pins_the_macro_to_the_workspace_version`: `lockmacro-runtime` depends on exactly
//!   the `lockmacro` of the same release.

use std::path::Path;
use std::process::Command;

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
