//! Behaviour tests of `singularity-mesos`: the JSON mapping, and the executor client against
//! the strict fake agent (`singularity-fake-agent`). One module per topic.

mod client;
mod json;
mod recordio_props;
