//! Behaviour tests of `singularity-containers` against the real engines of
//! `scripts/services.sh`. One module per topic.

#[macro_use]
mod support;

mod cgroups;
mod engine;
mod oci;
