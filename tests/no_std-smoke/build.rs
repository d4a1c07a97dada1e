//! Puts the target's `memory.x` where the linker scripts of cortex-m-rt and
//! riscv-rt look for it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").unwrap_or_default();
    let src = if target.starts_with("riscv") {
        "memory-riscv.x"
    } else {
        "memory-arm.x"
    };
    fs::copy(src, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
}
