//! `docs/configuration.md` is generated from the key table and must match it.

use std::path::Path;

#[test]
fn the_configuration_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = singularity_common::config::docs::reference_markdown();
    assert!(
        committed == generated,
        "{} is out of date with the key table; regenerate it with\n    \
         cargo run -p singularity-common --example config-docs > docs/configuration.md",
        path.display()
    );
}

#[test]
fn the_reference_lists_every_spelling_of_every_key() {
    use singularity_common::config::ConfigClass;
    let reference = singularity_common::config::docs::reference_markdown();
    for class in ConfigClass::ALL {
        for spec in class.keys() {
            assert!(
                reference.contains(&format!("`{}`", spec.yaml)),
                "{}",
                spec.yaml
            );
            assert!(
                reference.contains(&format!("`{}`", spec.toml)),
                "{}",
                spec.toml
            );
            for spelling in spec.properties {
                assert!(reference.contains(&format!("`{spelling}`")), "{spelling}");
            }
        }
    }
}
