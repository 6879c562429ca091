//! Packaging: the man pages in `agent/man/` match the CLI, and what the `.deb` ships
//! (`[package.metadata.deb]` in `agent/Cargo.toml`) exists. The `.deb` itself is built from the
//! test build's binary, installed, upgraded and purged by `podman::bastion`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory as _;
use quorumgate::cli::Cli;

const CRATE_DIR: &str = env!("CARGO_MANIFEST_DIR");
const BLESS: &str = "QUORUMGATE_BLESS";

fn man_dir() -> std::path::PathBuf {
    Path::new(CRATE_DIR).join("man")
}

/// `*.1` files of a directory by name.
fn pages(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("read a man page"))
        })
        .collect()
}

/// The man pages are rendered from the clap definitions (clap_mangen) and checked in, so the
/// `.deb` needs no build step; this test fails when they are stale. Regenerate with
/// `QUORUMGATE_BLESS=1 cargo nextest run -p quorumgate --test integration packaging`.
#[test]
fn man_pages_match_the_cli() {
    let fresh = tempfile::tempdir().expect("tempdir");
    clap_mangen::generate_to(Cli::command(), fresh.path()).expect("render the man pages");
    let want = pages(fresh.path());
    assert!(want.contains_key("quorumgate.1") && want.contains_key("quorumgate-agent.1"));
    let dir = man_dir();
    if std::env::var_os(BLESS).is_some() {
        std::fs::create_dir_all(&dir).expect("create agent/man");
        for name in pages(&dir).keys() {
            std::fs::remove_file(dir.join(name)).expect("remove a stale page");
        }
        for (name, text) in &want {
            std::fs::write(dir.join(name), text).expect("write a page");
        }
        return;
    }
    let have = pages(&dir);
    let stale: BTreeSet<&String> = want
        .keys()
        .chain(have.keys())
        .filter(|name| want.get(*name) != have.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "agent/man/ does not match the CLI ({stale:?}): run `{BLESS}=1 cargo nextest run -p quorumgate --test integration packaging` and commit agent/man/"
    );
}

fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(CRATE_DIR).join("Cargo.toml"))
        .expect("read agent/Cargo.toml")
        .parse()
        .expect("agent/Cargo.toml is TOML");
    manifest
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("deb"))
        .and_then(toml::Value::as_table)
        .cloned()
        .expect("[package.metadata.deb]")
}

/// The `.deb` ships the agent without the `emulator` feature: the demo's Route 53 data-plane
/// emulator is a test fixture (and the feature is on by default for `cargo run`).
#[test]
fn the_deb_is_built_without_the_test_fixture_feature() {
    let deb = deb_metadata();
    assert_eq!(
        deb.get("default-features").and_then(toml::Value::as_bool),
        Some(false),
        "[package.metadata.deb] default-features = false"
    );
    let features: Vec<&str> = deb
        .get("features")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    assert!(!features.contains(&"emulator"), "{features:?}");
}

/// Whether `pattern` (relative to the crate, at most one `*` in its file name) matches a file.
fn matches_a_file(pattern: &str) -> bool {
    let path = Path::new(CRATE_DIR).join(pattern);
    let Some((prefix, suffix)) = pattern
        .rsplit('/')
        .next()
        .and_then(|name| name.split_once('*'))
    else {
        return path.is_file();
    };
    let dir = path.parent().expect("a parent");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(suffix) && e.path().is_file()
        })
    })
}

#[test]
fn deb_assets_exist() {
    let deb = deb_metadata();
    let assets = deb
        .get("assets")
        .and_then(toml::Value::as_array)
        .expect("assets");
    for asset in assets {
        let fields: Vec<&str> = asset
            .as_array()
            .expect("[source, dest, mode]")
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        let [source, dest, mode] = fields[..] else {
            panic!("asset {asset} is not [source, dest, mode]");
        };
        assert!(
            u32::from_str_radix(mode, 8).is_ok(),
            "mode {mode} of {source}"
        );
        assert!(
            !dest.starts_with('/'),
            "{dest}: cargo-deb wants relative destinations"
        );
        // Built by cargo-deb itself.
        if source.starts_with("target/release/") {
            continue;
        }
        assert!(
            matches_a_file(source),
            "{source} (for {dest}) does not exist"
        );
    }
    let units = deb
        .get("systemd-units")
        .and_then(|u| u.get("unit-scripts"))
        .and_then(toml::Value::as_str)
        .expect("systemd-units.unit-scripts");
    assert!(
        Path::new(CRATE_DIR)
            .join(units)
            .join("quorumgate.service")
            .is_file(),
        "{units}/quorumgate.service"
    );
}

#[test]
fn the_units_documentation_pages_are_shipped() {
    let unit = std::fs::read_to_string(Path::new(CRATE_DIR).join("../systemd/quorumgate.service"))
        .expect("read the unit");
    let docs: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .filter_map(|d| d.strip_prefix("man:"))
        .collect();
    assert!(!docs.is_empty(), "the unit names no man page");
    for page in docs {
        // man:quorumgate-agent(1) → agent/man/quorumgate-agent.1
        let file = page.replace('(', ".").replace(')', "");
        assert!(
            man_dir().join(&file).is_file(),
            "{page}: no agent/man/{file}"
        );
    }
}
