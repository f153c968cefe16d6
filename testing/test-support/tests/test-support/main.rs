//! Behaviour tests of `singularity-test-support`: the S3-protocol servers checked with
//! independent clients, and the machine-wide services of `scripts/services.sh up`. One module
//! per topic.

mod s3_server;
mod services;
