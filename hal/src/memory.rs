//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps memory a program freed inside its arenas (one for the main thread,
//! more for other threads: up to 8 per core on 64-bit) for later reuse, and returns it to the
//! kernel only from the top of each heap, and only beyond a threshold. After a burst of
//! allocations that ends (a thousand sessions that leave), most of that memory stays resident
//! although nothing uses it. [`release_free_heap`] asks the allocator to return it.

/// Returns the free pages of every glibc malloc arena to the kernel: glibc's `malloc_trim(0)`
/// (malloc_trim(3); since glibc 2.8 it releases whole free pages anywhere in a heap with
/// `madvise(MADV_DONTNEED)`, not only at its top). Their contents are gone; the address range
/// stays the allocator's, so later allocations reuse it (faulting fresh zero pages in).
///
/// Cost: a walk over the free chunks of every arena, each arena's lock held meanwhile (threads
/// allocating from that arena wait): about a millisecond for a heap of tens of MB. Call it
/// when memory was freed, not on a hot path.
///
/// Returns whether any memory was released. Where the C library is not glibc (musl, other
/// systems) it does nothing and returns `false`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the hal's call into glibc's allocator; see the SAFETY comment
pub fn release_free_heap() -> bool {
    // SAFETY: malloc_trim takes a plain integer, reads and writes only the allocator's own
    // state under its arena locks, and is MT-Safe (malloc_trim(3), glibc manual "Attributes"):
    // it may run on any thread while others allocate and free.
    let released = unsafe { libc::malloc_trim(0) };
    released != 0
}

/// Returns the free pages of every glibc malloc arena to the kernel (see the glibc version of
/// this function); without glibc it does nothing and returns `false`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_free_pages_between_live_blocks() {
        // 4,096 blocks of 4,000 bytes (below the mmap threshold, so they live in the heap);
        // all but one in 64 freed, the last kept: free runs of ~250 KB sit between live
        // blocks, below the heap's top, where only malloc_trim gives pages back.
        let mut blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 4000]).collect();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 64 == 0
        });
        let released = release_free_heap();
        assert_eq!(blocks.len(), 64);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                released,
                "glibc had free pages between live blocks to give back"
            );
        } else {
            assert!(!released, "without glibc nothing is done");
        }
    }
}
