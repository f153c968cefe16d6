//! Behaviour tests of `singularity-artifacts`: real archives extracted into real directories,
//! cached files placed, md5s verified. One module per topic; `support` builds archives and
//! lists directories.

mod support;

mod extract;
mod extract_props;
mod place;
mod verify;
