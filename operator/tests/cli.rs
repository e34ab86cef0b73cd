//! The command line of the operator.

use clap::Parser;
use sluice_operator::{Cli, Command, cli};

#[tokio::test]
async fn crds_prints_the_crd_yaml() {
    let parsed = Cli::try_parse_from(["sluice-operator", "crds"]).expect("`crds` parses");
    assert!(matches!(parsed.command, Command::Crds));
    let mut out = Vec::new();
    cli(parsed, &mut out).await.expect("crds runs");
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        sluice_crd::crds_yaml()
    );
}

#[test]
fn a_subcommand_is_required_and_unknown_ones_are_refused() {
    assert!(Cli::try_parse_from(["sluice-operator"]).is_err());
    assert!(Cli::try_parse_from(["sluice-operator", "reconcile"]).is_err());
}
