//! Prints the configuration reference generated from the key table:
//! `cargo run -p singularity-common --example config-docs > docs/configuration.md`.

fn main() {
    print!("{}", singularity_common::config::docs::reference_markdown());
}
