//! glibc malloc settings for streaming. Every Flight message allocates a ~2 MiB IPC body and a
//! ~2 MiB gRPC frame buffer. With glibc's defaults such blocks come from fresh `mmap`s (or from
//! heap memory just trimmed back to the kernel), so each message page-faults ~1,000 zeroed pages:
//! measured, 11 % of the server's CPU on a bulk scan. Raising the mmap and trim thresholds keeps
//! freed message buffers for reuse. The memory they hold is bounded by the messages in flight,
//! not by the result size (`tests/python/test_memory.py` checks the bound).
//!
//! The binary now gives Rust's allocations to jemalloc (`src/main.rs`); these settings still
//! govern what comes from glibc: DuckDB's C++ side, and the library used without the binary.

/// Blocks below this come from the heap, not a fresh mmap.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap is kept up to this much.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Applies the settings; a no-op outside glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it is thread-safe and takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
