//! The operator's ClusterRole and Role in the Helm chart hold exactly the rules the operator
//! declares (`sluice_operator::rbac`): the chart includes the committed output of
//! `sluice-operator rbac`, and this test fails when that copy is stale.

use clap::Parser;
use sluice_operator::rbac::{CHART_RULES_FILE, REGENERATE_CHART_RULES, rules, rules_yaml};
use sluice_operator::{Cli, Command, cli};
use std::path::PathBuf;

#[test]
fn chart_operator_rules_are_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_RULES_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {CHART_RULES_FILE} ({e}); generate it with:\n\n    {REGENERATE_CHART_RULES}\n")
    });
    if committed != rules_yaml() {
        panic!(
            "{CHART_RULES_FILE} differs from sluice_operator::rbac::rules(); regenerate it \
             with:\n\n    {REGENERATE_CHART_RULES}\n"
        );
    }
}

#[test]
fn the_chart_cluster_role_includes_the_rules_file() {
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/sluice/templates/operator-rbac.yaml");
    let text = std::fs::read_to_string(&template).expect("the operator's RBAC template");
    assert!(
        text.contains(r#".Files.Get "files/operator-rules.yaml""#),
        "the operator's ClusterRole must take its rules from files/operator-rules.yaml"
    );
}

#[tokio::test]
async fn rbac_prints_the_rules_as_yaml() {
    let parsed = Cli::try_parse_from(["sluice-operator", "rbac"]).expect("`rbac` parses");
    assert!(matches!(parsed.command, Command::Rbac));
    let mut out = Vec::new();
    cli(parsed, &mut out).await.expect("rbac runs");
    let text = String::from_utf8(out).expect("UTF-8");
    let printed: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
    assert_eq!(printed["cluster"], serde_json::json!(rules()));
}
