//! Link-time code layout for the executor binary.
//!
//! One executor runs per task, so its resident memory is multiplied by the tasks on a host.
//! Most of that memory is the binary's own code: the kernel maps the cached pages around every
//! page of code that runs, and the few functions a supervised task needs are spread over the
//! whole text of a binary that also links the AWS SDK, TLS and the Docker client. Handing the
//! linker the list of those functions (`hot-symbols.txt`, produced by
//! `bench/executor-symbol-order.sh`) places them next to each other, which roughly halves the
//! resident code. Names missing from the current build are ignored, so a stale list only makes
//! the layout less compact; it never breaks the build.

use std::env;
use std::path::PathBuf;

const ORDER_FILE: &str = "hot-symbols.txt";
const OPT_OUT: &str = "SINGULARITY_EXECUTOR_SYMBOL_ORDER";
/// Packed relocations save the loader reading 1.3 MB of relocation records, but the binary
/// then needs glibc 2.36 to start, so they are only used when asked for.
const PACKED_RELOCS: &str = "SINGULARITY_EXECUTOR_PACKED_RELOCS";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed={OPT_OUT}");
    println!("cargo:rerun-if-env-changed={PACKED_RELOCS}");
    let bin = "singularity-executor";
    if env::var(PACKED_RELOCS).is_ok_and(|v| v == "on") {
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,-z,pack-relative-relocs");
    }
    if env::var(OPT_OUT).is_ok_and(|v| v == "off") || !links_with_lld() {
        return;
    }
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let order = dir.join(ORDER_FILE);
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
}

/// rustc links x86_64 Linux GNU binaries with its bundled lld unless told to use another
/// linker; the ordering option is lld's, so any explicit linker choice turns it off.
fn links_with_lld() -> bool {
    let cfg = |key: &str| env::var(key).unwrap_or_default();
    let flags = cfg("CARGO_ENCODED_RUSTFLAGS");
    env::var_os("RUSTC_LINKER").is_none()
        && cfg("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && cfg("CARGO_CFG_TARGET_OS") == "linux"
        && cfg("CARGO_CFG_TARGET_ENV") == "gnu"
        && !flags.contains("linker")
        && !flags.contains("fuse-ld")
}
