//! Giving freed memory back to the system (glibc on Linux, the operator image's libc).
//!
//! glibc keeps what a burst freed — the pages of 1,000-volume list answers, thousands of watch
//! events at once — in its arenas, one per thread that allocated, and hands little of it back:
//! at 3,000 Volumes the operator held 175 MiB of heap with 72 MiB in use. Two arenas are enough
//! for a runtime of a few threads, large blocks are mapped apart, and a periodic `malloc_trim`
//! returns the free pages, so the resident size follows what is in use. Elsewhere this does
//! nothing.

use std::time::Duration;

/// How often free heap pages are handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    /// `M_ARENA_MAX` and `M_MMAP_THRESHOLD` in glibc's malloc.h.
    const M_ARENA_MAX: i32 = -8;
    const M_MMAP_THRESHOLD: i32 = -3;

    pub fn tune(arenas: i32, mmap_threshold: i32) {
        // SAFETY: mallopt only changes allocator parameters; it is called once at startup,
        // before other threads allocate.
        unsafe {
            mallopt(M_ARENA_MAX, arenas);
            mallopt(M_MMAP_THRESHOLD, mmap_threshold);
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
    pub fn tune(_: i32, _: i32) {}
    pub fn trim() {}
}

/// Limits the allocator to two arenas, and serves every block of 256 KiB or more (a page of a
/// cloud list, a watch's buffers) from its own mapping, given back as soon as it is freed,
/// instead of glibc's default, which raises that threshold as large blocks are freed and then
/// keeps them in the heap. Call before the runtime starts its threads.
pub fn tune_allocator() {
    glibc::tune(2, 256 * 1024);
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
