//! Giving freed memory back to the system after big outbound backlogs.
//!
//! A slow consumer's backlog (up to `--max-backlog-bytes` each) is freed
//! when it goes, but glibc keeps freed memory in the middle of its heap:
//! after a burst of stalled clients the server's RSS would stay tens of
//! MiB above what it uses, for good. `malloc_trim` returns those pages. It
//! walks the heap, so the loop calls it at most once per `TRIM_EVERY`, and
//! only after a backlog of at least `BIG_BACKLOG` bytes was dropped.

use std::time::Duration;

/// Backlogs at least this big mark memory worth trimming when dropped.
pub const BIG_BACKLOG: usize = 64 * 1024;

/// Fewest seconds between two trims.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim(3) is a glibc function with no preconditions: it
    // takes the allocator's own locks, touches only memory the allocator
    // owns and has freed, and is safe to call at any time from any thread.
    // The signature matches glibc's `int malloc_trim(size_t pad)`.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory by themselves or offer no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
