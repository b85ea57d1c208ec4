//! libnix_evalcost.so: the nix-evalcost plugin, loaded into Nix with `plugin-files`.
//!
//! Thin by design: the C++ shim (`cpp/`) senses Nix, and this crate hands what it senses to the
//! pure core (`nix_evalcost_core`), which does the accounting and writes the report.
//!
//! - [`entry`]: `nix_plugin_entry`, the built-for marker, the on/off switch;
//! - `bridge`: the cxx declarations (private);
//! - [`calls`]: the functions the shim calls, over one [`Session`](nix_evalcost_core::session);
//! - [`sensor`]: Nix's counters and the process's probes as the core's readings;
//! - [`passive`]: passive profiling (every evaluating command, configured in nix.conf).
//!
//! Its logic is unit-tested in the core; this crate has no unit tests of its own (a test
//! harness would link the shim without Nix's libraries). `tests/` drives the built plugin.

mod bridge;
mod calls;
mod entry;
mod passive;
mod probe;
mod sensor;
