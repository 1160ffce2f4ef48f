//! The panic guard around third-party code that can panic on bad input.
//!
//! rawler can panic on malformed files, sometimes inside its own worker
//! threads, and cudarc panics where its libraries are missing. [`guarded`]
//! runs such a call under `catch_unwind`, turns a panic into an error
//! message for a typed error, and keeps the panic text off the user's
//! terminal.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// Number of guarded sections running right now (any thread).
static GUARDED: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Runs `f`, converting a panic into `Err(message)`. While any guarded
/// section runs, panic messages (also from helper threads a decoder spawns)
/// are not printed; panics elsewhere still print as usual.
pub fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
    GUARDED.fetch_add(1, Ordering::SeqCst);
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.fetch_sub(1, Ordering::SeqCst);
    r.map_err(|e| {
        let msg = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("decoder crashed ({})", msg.lines().next().unwrap_or(""))
    })
}
