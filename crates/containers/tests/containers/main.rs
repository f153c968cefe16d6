//! Behaviour tests of `singularity-containers` against the real engines of
//! `scripts/services.sh`. One module per topic.

mod engine;
mod oci;
