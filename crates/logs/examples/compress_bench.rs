//! Compresses one file as the log pipeline compresses a rotated segment (for `bench/logs.sh`,
//! which times it against the `gzip` binary).
//!
//! `compress_bench FILE LEVEL` writes `FILE.gz` and removes `FILE`.

use std::path::PathBuf;

use singularity_logs::{Compression, CompressionKind, compress::compress_segment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = PathBuf::from(args.next().ok_or("usage: compress_bench FILE LEVEL")?);
    let level: u32 = args
        .next()
        .ok_or("usage: compress_bench FILE LEVEL")?
        .parse()?;
    compress_segment(
        &file,
        &Compression {
            kind: CompressionKind::Gzip,
            level,
            extension: ".gz".to_owned(),
        },
    )?;
    Ok(())
}
