//! Giving freed memory back to the system (glibc on Linux, the operator image's libc).
//!
//! glibc keeps what a burst freed — the pages of 1,000-volume list answers, thousands of watch
//! events at once — in its arenas, one per thread that allocated, and hands little of it back:
//! at 3,000 Volumes the operator held 175 MiB of heap with 72 MiB in use. Two arenas are enough
//! for a runtime of a few threads, and a periodic `malloc_trim` returns the free pages, so the
//! resident size follows what is in use. Elsewhere this does nothing.

use std::time::Duration;

/// How often free heap pages are handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    /// `M_ARENA_MAX` in glibc's malloc.h.
    const M_ARENA_MAX: i32 = -8;

    pub fn limit_arenas(arenas: i32) {
        // SAFETY: mallopt only changes allocator parameters; it is called once at startup.
        unsafe {
            mallopt(M_ARENA_MAX, arenas);
        }
    }

    pub fn trim() {
        // SAFETY: malloc_trim only returns free pages to the system; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn limit_arenas(_: i32) {}
    pub fn trim() {}
}

/// Limits the allocator to two arenas. Call before the runtime starts its threads.
pub fn limit_arenas() {
    glibc::limit_arenas(2);
}

/// Hands free heap pages back to the system every [`TRIM_EVERY`], forever.
pub async fn trim_periodically() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        glibc::trim();
    }
}
