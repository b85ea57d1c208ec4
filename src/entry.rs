//! How Nix meets the plugin: `nix_plugin_entry` (called right after `plugin-files` loads us),
//! the marker naming the Nix this build is for, and the `NIX_EVALCOST` switch.

use crate::bridge::ffi;
use nix_evalcost_core::guard::guarded;
use nix_evalcost_core::nix_version;
use nix_evalcost_core::protocol::{self, BUILT_FOR_PREFIX};
use std::sync::OnceLock;

/// The Nix version this plugin was compiled against (from build.rs).
pub const BUILT_FOR: &str = env!("EVALCOST_NIX_VERSION");

const MARKER_LEN: usize = BUILT_FOR_PREFIX.len() + BUILT_FOR.len() + 1;

/// `nix-evalcost-built-for-nix=<version>\0` in the binary, found by `nix-evalcost` (which
/// explains a mismatch before Nix fails to load us).
#[used]
#[no_mangle]
pub static NIX_EVALCOST_BUILT_FOR: [u8; MARKER_LEN] = protocol::marker(BUILT_FOR_PREFIX, BUILT_FOR);

/// Called by Nix right after it loads the plugin. Registers the builtins when this is the Nix
/// the plugin was built for; otherwise says so once, and Nix goes on without them.
#[no_mangle]
pub extern "C" fn nix_plugin_entry() {
    let outcome = guarded("loading the plugin", || {
        crate::sensor::start_clock();
        let runtime = ffi::nix_version();
        if !nix_version::same_minor(&runtime, BUILT_FOR) {
            return Err(format!(
                "built for Nix {BUILT_FOR} but loaded into Nix {runtime}; rebuild it against this Nix. \
                 Its builtins are not registered"
            ));
        }
        ffi::register_primops().map_err(|e| format!("registering builtins: {e}"))?;
        ffi::register_passive_settings().map_err(|e| format!("registering settings: {e}"))?;
        install_passive_hooks()
    });
    if let Err(message) = outcome {
        eprintln!("warning: nix-evalcost: {message}");
    }
}

/// Passive profiling needs to see evaluators come and go. Off (`NIX_EVALCOST=0`), nothing is
/// redirected at all.
fn install_passive_hooks() -> Result<(), String> {
    if !plugin_enabled() {
        return Ok(());
    }
    let why_not = ffi::install_passive_hooks();
    if why_not.is_empty() {
        Ok(())
    } else {
        Err(format!("passive profiling is unavailable: {why_not}"))
    }
}

/// `NIX_EVALCOST=0` (or false/off/no) turns the plugin into a no-op.
pub fn plugin_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| protocol::enabled(std::env::var(protocol::ENABLE_VAR).ok().as_deref()))
}
