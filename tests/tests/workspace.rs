//! The workspace's shape, as `ARCHITECTURE.md` states it: product crates never depend on
//! kubesim or on a test crate, no dependency cycle goes through a dev-dependency, benchmarks
//! live in `sluice-benches`, and every package is in `crates/<its name>` but the three the top
//! level keeps (`operator/`, `web-api/`, `tests/`).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The crates shipped as images.
const PRODUCT: [&str; 3] = ["sluice-api", "sluice-operator", "sluice-worker"];
/// What no product crate may depend on.
const NOT_IN_PRODUCTS: [&str; 4] = [
    "kubesim",
    "sluice-testkit",
    "sluice-tests",
    "sluice-benches",
];

/// One workspace package: its folder, and its workspace dependencies by kind.
struct Package {
    dir: String,
    normal: BTreeSet<String>,
    dev: BTreeSet<String>,
    targets: Vec<(String, String)>,
}

fn workspace() -> BTreeMap<String, Package> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let root = Path::new(meta["workspace_root"].as_str().expect("workspace_root"));
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(root).ok())
                .expect("a package inside the workspace");
            let mut package = Package {
                dir: dir.to_string_lossy().into_owned(),
                normal: BTreeSet::new(),
                dev: BTreeSet::new(),
                targets: Vec::new(),
            };
            for dep in p["dependencies"].as_array().expect("dependencies") {
                let name = dep["name"].as_str().expect("dependency name").to_string();
                if !names.contains(&name) {
                    continue;
                }
                match dep["kind"].as_str() {
                    Some("dev") => package.dev.insert(name),
                    _ => package.normal.insert(name),
                };
            }
            for target in p["targets"].as_array().expect("targets") {
                let kinds = target["kind"].as_array().expect("kind");
                let kind = kinds[0].as_str().expect("kind").to_string();
                let name = target["name"].as_str().expect("target name").to_string();
                package.targets.push((kind, name));
            }
            (p["name"].as_str().expect("name").to_string(), package)
        })
        .collect()
}

/// Every workspace package `name` depends on, directly or not, through normal dependencies.
fn closure(ws: &BTreeMap<String, Package>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for dep in &ws[&n].normal {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn product_crates_never_depend_on_kubesim_or_test_crates() {
    let ws = workspace();
    for product in PRODUCT {
        let deps = closure(&ws, product);
        for banned in NOT_IN_PRODUCTS {
            assert!(
                !deps.contains(banned),
                "{product} depends on {banned}; product crates may only dev-depend on it"
            );
        }
    }
}

#[test]
fn no_dependency_cycle_goes_through_a_dev_dependency() {
    let ws = workspace();
    for (name, package) in &ws {
        for dev in &package.dev {
            assert!(
                !closure(&ws, dev).contains(name),
                "{name} dev-depends on {dev}, which depends on {name}"
            );
        }
    }
}

#[test]
fn benchmarks_live_in_sluice_benches() {
    let ws = workspace();
    for (name, package) in &ws {
        for (kind, target) in &package.targets {
            if kind == "bin" && target.ends_with("-bench") {
                assert_eq!(name, "sluice-benches", "{name} has the benchmark {target}");
            }
        }
    }
}

/// The packages kept at the top level, by folder; every other one is `crates/<its name>`.
const TOP_LEVEL: [(&str, &str); 3] = [
    ("operator", "sluice-operator"),
    ("web-api", "sluice-api"),
    ("tests", "sluice-tests"),
];

#[test]
fn packages_are_in_folders_of_their_name() {
    let ws = workspace();
    for (name, package) in &ws {
        let expected = match TOP_LEVEL.iter().find(|(_, n)| n == name) {
            Some((dir, _)) => dir.to_string(),
            None => format!("crates/{name}"),
        };
        assert_eq!(
            package.dir, expected,
            "the package {name} is in {}",
            package.dir
        );
    }
}
