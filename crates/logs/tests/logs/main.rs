//! Behaviour tests of the log pipeline on real files, real processes and real file systems.

mod additional;
mod full_disk;
mod recovery;
mod rotation;
mod support;
mod teardown;
