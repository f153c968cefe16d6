//! Behaviour tests of the executor cleanup: task definitions and sandboxes made by the real
//! executor binary (standalone mode), the strict Singularity API stand-in on loopback, real
//! dockerd, and the cleanup binary as a subprocess.

mod cleaning;
mod containers;
mod refusals;
mod support;
