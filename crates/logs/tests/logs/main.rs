//! Behaviour tests of the log pipeline, on real files and real file systems.

mod additional;
