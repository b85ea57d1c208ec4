//! nix-evalcost: per-output evaluation cost of Nix flakes.
//!
//! Where things are:
//! - `cpp/`: the C++ shim inside Nix (counters read in `counters.cc`, the walk in `walk.cc`,
//!   the builtins in `primops.cc`, version differences in `compat.hh`);
//! - [`bridge`]: the cxx declarations between the two; [`plugin`]: the Rust half of the plugin;
//! - [`accounting`]: exclusive-cost accounting; [`walk_policy`]: which outputs are visited;
//! - [`stacks`]: call-stack profiles (the call tree under each walked node);
//! - [`report`]: the report schema; [`report_io`]: reading and writing it;
//! - [`merge`]: merging many reports into per-path statistics ([`stats`], [`pathglob`]);
//! - [`metric`], [`units`], [`render`]: one exporter per output format;
//! - [`cli`]: the `nix-evalcost` command.

pub mod accounting;
pub mod attrpath;
pub mod bridge;
pub mod cli;
pub mod cost;
pub mod merge;
pub mod metric;
pub mod pathglob;
pub mod plugin;
pub mod probe;
pub mod render;
pub mod report;
pub mod report_io;
pub mod stacks;
pub mod stats;
pub mod units;
pub mod walk_policy;
