//! nix-evalcost-core: everything nix-evalcost knows that is not Nix itself.
//!
//! The plugin (the workspace's root package) senses Nix and feeds readings to a [`session`];
//! the CLI (`crates/cli`) reads reports and renders them. Both go through this crate, which needs
//! neither Nix nor a C++ toolchain.
//!
//! - [`cost`]: the cost model (additive counters, gauges, Nix's structure sizes);
//! - [`accounting`]: exclusive-cost accounting and conservation;
//! - [`session`]: one measuring session of the plugin (nodes, phases, the report), fed readings;
//! - [`stacks`]: call-stack profiles (the call tree under each walked node);
//! - [`walk_policy`]: which outputs a walk visits;
//! - [`passive`]: passive profiling's configuration, sampling, file names and retention;
//! - [`report`]: the report schema; [`report_io`]: reading and writing it;
//! - [`merge`]: merging many reports into per-path statistics ([`stats`], [`pathglob`]);
//! - [`metric`], [`units`], [`render`]: one exporter per output format; [`summary`]: the table
//!   `profile` prints, rendered by the plugin or the CLI;
//! - [`protocol`]: what the plugin and the CLI agree on (progress pipe, version marker);
//! - [`nix_version`]: the one parser of Nix version strings;
//! - [`attrpath`]: attribute names as data: display, quoting, sanitising;
//! - [`guard`]: errors and panics as messages, so none crosses the plugin's bridge.

pub mod accounting;
pub mod attrpath;
pub mod callsite;
pub mod compare;
pub mod cost;
pub mod gate;
pub mod functions;
pub mod guard;
pub mod isolate;
pub mod join;
pub mod merge;
pub mod metric;
pub mod nix_version;
pub mod passive;
pub mod pathglob;
pub mod ranktest;
pub mod protocol;
pub mod render;
pub mod report;
pub mod report_io;
pub mod session;
pub mod stacks;
pub mod stats;
pub mod summary;
pub mod units;
pub mod walk_policy;
pub mod workers;
