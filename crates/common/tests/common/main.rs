//! Behaviour tests of `singularity-common`: configuration in its three formats, the records
//! the daemons exchange, names and S3 keys. One module per topic; the files they read are in
//! `tests/data/`.

mod config_docs;
mod config_errors;
mod config_formats;
mod config_hostile;
mod keyfmt_table;
mod naming_shared;
mod parser_props;
mod records_compat;
mod records_roundtrip;
mod task_logs_records;
