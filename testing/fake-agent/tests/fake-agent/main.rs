//! Behaviour tests of `singularity-fake-agent`: driven with raw HTTP, it refuses exactly what
//! the real agent refuses.

mod validation;
