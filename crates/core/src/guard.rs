//! Nothing unwinds across the plugin's bridge: every Rust function the C++ shim calls runs
//! behind [`guarded`], which turns an error or a panic into an `Err(String)`. cxx throws that
//! as `rust::Error`, and the shim turns it into a `nix::Error`.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; an error or a panic becomes a one-line message saying `what` failed.
pub fn guarded<T, E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: internal error (please report): {detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_panics_become_messages() {
        assert_eq!(guarded("x", || Ok::<_, String>(3)), Ok(3));
        assert_eq!(guarded("reading", || Err::<(), _>("boom")), Err("reading: boom".into()));
        let panicked = guarded("walking", || -> Result<(), String> { panic!("bad index") });
        assert_eq!(panicked, Err("walking: internal error (please report): bad index".into()));
    }
}
