//! The command line of the operator.

use clap::Parser;
use sluice_operator::{Cli, Command, run};

#[test]
fn crds_prints_the_crd_yaml() {
    let cli = Cli::try_parse_from(["sluice-operator", "crds"]).expect("`crds` parses");
    assert!(matches!(cli.command, Command::Crds));
    let mut out = Vec::new();
    run(cli, &mut out).expect("crds runs");
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
