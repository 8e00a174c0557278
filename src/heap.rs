//! Giving freed heap memory back to the operating system after the two moments that allocate
//! and free the most: loading a store at start and a replica's initial sync.
//!
//! Why: both build the index (which stays) while parsing, copying and verifying the same
//! tokens in temporaries (which go). glibc's allocator keeps most of such a peak mapped, spread
//! over per-thread arenas, so a server holding 100,000 accounts would report tens of MiB more
//! resident memory than it uses, for as long as it runs. `malloc_trim` returns the free pages.
//! Other allocators and platforms need nothing here.

/// Trims the heap: returns free heap pages to the OS where the allocator keeps them (glibc); a
/// no-op elsewhere.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only walks the allocator's own free lists, under its locks; it
        // may be called at any time from any thread, and 0 asks it to keep no padding.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
