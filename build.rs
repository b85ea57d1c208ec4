//! Builds the C++ shim (`cpp/`) against the Nix found by pkg-config and links the plugin to it.
//!
//! This package's only library target is the cdylib, so the shim (`rustc-link-lib` from
//! cxx-build) and Nix's libraries (`rustc-cdylib-link-arg`) are linked into it and nothing else:
//! the CLI and the test binaries are other packages' targets, or link no library of this one.

use std::process::exit;

// The one parser of Nix versions, shared with the core (std only, so it compiles here too).
#[path = "crates/core/src/nix_version.rs"]
#[allow(dead_code)]
mod nix_version;

/// The Nix libraries the shim uses: nix-expr (evaluator), nix-flake (locking), nix-cmd
/// (flakeSettings), and Boehm GC (allocation counters).
const NIX_PACKAGES: &[&str] = &["nix-expr", "nix-flake", "nix-cmd", "nix-store", "nix-util", "bdw-gc"];

fn main() {
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=src/bridge.rs");
    println!("cargo:rerun-if-changed=crates/core/src/nix_version.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let mut includes = Vec::new();
    let mut nix_version = String::new();
    for package in NIX_PACKAGES {
        let lib = match pkg_config::Config::new().cargo_metadata(false).probe(package) {
            Ok(lib) => lib,
            Err(err) => missing_nix(package, &err),
        };
        if *package == "nix-expr" {
            nix_version = lib.version.clone();
            // Another Nix behind the same PKG_CONFIG_PATH (an upgraded dev environment) must
            // rebuild the shim: its .pc file changes.
            for dir in std::env::var("PKG_CONFIG_PATH").unwrap_or_default().split(':').filter(|d| !d.is_empty()) {
                let pc = std::path::Path::new(dir).join("nix-expr.pc");
                if pc.exists() {
                    println!("cargo:rerun-if-changed={}", pc.display());
                }
            }
        }
        includes.extend(lib.include_paths);
        for dir in &lib.link_paths {
            println!("cargo:rustc-cdylib-link-arg=-L{}", dir.display());
            println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{}", dir.display());
        }
        for name in &lib.libs {
            println!("cargo:rustc-cdylib-link-arg=-l{name}");
        }
    }
    let minor = nix_minor(&nix_version);
    println!("cargo:rustc-env=EVALCOST_NIX_VERSION={nix_version}");

    // The shim includes "nix-evalcost/src/bridge.rs.h" and "nix-evalcost/cpp/shim.hh".
    cxx_build::CFG.include_prefix = "nix-evalcost";
    let mut build = cxx_build::bridge("src/bridge.rs");
    build
        .files(["cpp/counters.cc", "cpp/walk.cc", "cpp/stacks.cc", "cpp/primops.cc", "cpp/passive.cc", "cpp/got.cc"])
        // Nix's own language standard: C++20 up to 2.29; C++23 from 2.30 (its headers use
        // std::ranges::to, std::views::zip, std::unreachable; checked on 2.34).
        .std(if minor >= 30 { "c++23" } else { "c++20" })
        .define("EVALCOST_NIX_MINOR", minor.to_string().as_str())
        .flag("-Wall")
        .flag("-Wextra")
        // Nix's headers are not -Wextra clean; -isystem keeps their warnings out of ours.
        .flag("-Wno-unused-parameter")
        // Designated initializers leave Nix's other fields at their defaults on purpose.
        .flag("-Wno-missing-field-initializers");
    includes.sort();
    includes.dedup();
    // -isystem /usr/include would break libstdc++'s #include_next; it is searched anyway.
    includes.retain(|dir| dir != std::path::Path::new("/usr/include"));
    for dir in &includes {
        build.flag(format!("-isystem{}", dir.display()));
    }
    build.compile("nix_evalcost_shim");
}

fn nix_minor(version: &str) -> u32 {
    match nix_version::NixVersion::parse(version) {
        Some(v) if v.major == 2 => v.minor,
        _ => {
            eprintln!("error: nix-evalcost needs Nix 2.x development files; pkg-config reports nix-expr {version:?}");
            exit(1)
        }
    }
}

fn missing_nix(package: &str, err: &pkg_config::Error) -> ! {
    eprintln!(
        "error: pkg-config cannot find `{package}` ({err}).\n\
         nix-evalcost builds against Nix's development files (Nix 2.26 with shared libraries).\n\
         Debian 12 has none that work: run the build inside the provided environment,\n\
         `scripts/nix-env run cargo build --release`, or point PKG_CONFIG_PATH at a Nix whose\n\
         lib/pkgconfig holds nix-expr.pc, nix-flake.pc and nix-cmd.pc."
    );
    exit(1)
}
