//! The CRDs committed in the Helm chart are the ones the CRD types generate.

use std::path::PathBuf;

const CHART_CRDS: &str = "charts/sluice/crds/sluice.dev.yaml";
const REGENERATE: &str =
    "cargo run -p sluice-operator -- crds > charts/sluice/crds/sluice.dev.yaml";

#[test]
fn chart_crds_are_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRDS);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {CHART_CRDS} ({e}); generate it with:\n\n    {REGENERATE}\n")
    });
    let generated = sluice_crd::crds_yaml();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(c, g)| c != g)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{CHART_CRDS} differs from the CRD types (first at line {}); regenerate it with:\n\n    \
             {REGENERATE}\n",
            first_difference + 1
        );
    }
}
