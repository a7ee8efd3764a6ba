//! A global allocator for tests that looks at every block as it is freed and counts the ones
//! that still hold a given byte string: a secret that was not wiped before its memory went
//! back to the heap (a dropped `String`, a `Vec` left behind when it grew, a serde
//! temporary). Tests install it with `#[global_allocator]`, [`Residue::watch`] a marker that
//! only their secret contains, run the code under test, and require
//! [`Residue::stop`]`().unwiped == 0`.
//!
//! `realloc` is done as allocate, copy, free here (never in place), so the old block of a
//! growing buffer is inspected like any other free. Blocks come from the system allocator
//! zeroed, so a block that never held the marker cannot match by chance.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The test allocator (see the module docs).
#[derive(Debug)]
pub struct Residue {
    needle: AtomicPtr<u8>,
    needle_len: AtomicUsize,
    freed: AtomicUsize,
    unwiped: AtomicUsize,
}

/// What a watch saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Blocks freed while watching.
    pub freed: usize,
    /// Freed blocks that still held the marker.
    pub unwiped: usize,
}

impl Residue {
    /// Not watching anything.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            needle: AtomicPtr::new(std::ptr::null_mut()),
            needle_len: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
            unwiped: AtomicUsize::new(0),
        }
    }

    /// Starts counting freed blocks that hold `marker` (at least 8 bytes, so that it cannot
    /// occur by accident), from every thread.
    ///
    /// # Panics
    /// For a marker shorter than 8 bytes: a test mistake.
    pub fn watch(&self, marker: &'static [u8]) {
        assert!(marker.len() >= 8, "a residue marker needs at least 8 bytes");
        self.freed.store(0, Ordering::SeqCst);
        self.unwiped.store(0, Ordering::SeqCst);
        self.needle_len.store(marker.len(), Ordering::SeqCst);
        self.needle
            .store(marker.as_ptr().cast_mut(), Ordering::SeqCst);
    }

    /// Stops watching and reports what was seen since [`Residue::watch`].
    pub fn stop(&self) -> Report {
        self.needle.store(std::ptr::null_mut(), Ordering::SeqCst);
        Report {
            freed: self.freed.load(Ordering::SeqCst),
            unwiped: self.unwiped.load(Ordering::SeqCst),
        }
    }

    /// Inspects a block about to be freed.
    fn inspect(&self, block: *const u8, size: usize) {
        let needle = self.needle.load(Ordering::SeqCst);
        if needle.is_null() {
            return;
        }
        let needle_len = self.needle_len.load(Ordering::SeqCst);
        self.freed.fetch_add(1, Ordering::SeqCst);
        if size < needle_len {
            return;
        }
        // SAFETY: `watch` stored the pointer and length of a `&'static [u8]`, which stays
        // valid and unchanged for the rest of the program.
        let needle = unsafe { std::slice::from_raw_parts(needle, needle_len) };
        // Volatile reads of one byte each: the block is live (about to be freed, not yet) and
        // `size` bytes long, and every offset read is below `size`.
        let byte_at = |offset: usize| {
            // SAFETY: `offset < size` (see the callers below), so the read is inside the live
            // block the caller passed.
            unsafe { std::ptr::read_volatile(block.wrapping_add(offset)) }
        };
        let found = (0..=size - needle_len).any(|start| {
            needle
                .iter()
                .enumerate()
                .all(|(offset, expected)| byte_at(start + offset) == *expected)
        });
        if found {
            self.unwiped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Default for Residue {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block comes from `System` with the caller's layout and goes back to it with
// the same layout; `realloc` returns a new block holding the old contents (up to the smaller
// size) or null, leaving the old block untouched on failure, as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Residue {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Zeroed, so a block's bytes are defined before the caller writes them and old
        // contents of recycled memory cannot look like a leak.
        // SAFETY: the caller guarantees a non-zero-sized layout, which is what `System` needs.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        self.inspect(block, layout.size());
        // SAFETY: the caller passes a block this allocator returned for `layout`, and that
        // block came from `System` with the same layout.
        unsafe { System.dealloc(block, layout) };
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to `layout.align()`, does
        // not overflow `isize`, which is what `from_size_align_unchecked` needs.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size` is non-zero (the caller's guarantee), so is the layout.
        let new_block = unsafe { self.alloc(new_layout) };
        if !new_block.is_null() {
            let len = layout.size().min(new_size);
            // SAFETY: both blocks are live, distinct, and at least `len` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(block, new_block, len) };
            // SAFETY: `block` is the caller's live block of `layout`, no longer used by it.
            unsafe { self.dealloc(block, layout) };
        }
        new_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MARKER: &[u8] = b"residue-unit-test-marker";

    /// One block of 64 bytes from `residue` holding the marker at `at`, wiped or not.
    fn block_with_marker(residue: &Residue, at: usize) -> *mut u8 {
        // SAFETY: a non-zero-sized layout.
        let block = unsafe { residue.alloc(LAYOUT) };
        assert!(!block.is_null());
        // SAFETY: `at + MARKER.len() <= 64`, inside the new block; the marker is a distinct
        // static.
        unsafe {
            std::ptr::copy_nonoverlapping(MARKER.as_ptr(), block.wrapping_add(at), MARKER.len())
        };
        block
    }

    const LAYOUT: Layout = match Layout::from_size_align(64, 8) {
        Ok(layout) => layout,
        Err(_) => panic!("a valid layout"),
    };

    #[test]
    fn freed_blocks_holding_the_marker_are_counted_and_wiped_ones_are_not() {
        let residue = Residue::new();
        residue.watch(MARKER);
        let kept = block_with_marker(&residue, 20);
        // SAFETY: the block is live, 64 bytes, and freed once with its own layout.
        unsafe { residue.dealloc(kept, LAYOUT) };
        let wiped = block_with_marker(&residue, 20);
        // SAFETY: 64 bytes of the live block.
        unsafe { std::ptr::write_bytes(wiped, 0, 64) };
        // SAFETY: as above.
        unsafe { residue.dealloc(wiped, LAYOUT) };
        // A grown block: the old copy is inspected as it is freed.
        let small = block_with_marker(&residue, 0);
        // SAFETY: the block's own layout and a non-zero size.
        let grown = unsafe { residue.realloc(small, LAYOUT, 256) };
        assert!(!grown.is_null());
        // SAFETY: the grown block is live and 256 bytes long.
        let copied = unsafe { std::slice::from_raw_parts(grown, MARKER.len()) };
        assert_eq!(copied, MARKER);
        // SAFETY: 256 bytes of the live block.
        unsafe { std::ptr::write_bytes(grown, 0, 256) };
        let grown_layout = Layout::from_size_align(256, 8).unwrap();
        // SAFETY: freed once with the layout it was grown to.
        unsafe { residue.dealloc(grown, grown_layout) };
        assert_eq!(
            residue.stop(),
            Report {
                freed: 4,
                unwiped: 2
            }
        );
        // Not watching: nothing is counted.
        let unwatched = block_with_marker(&residue, 0);
        // SAFETY: as above.
        unsafe { residue.dealloc(unwatched, LAYOUT) };
        residue.watch(MARKER);
        assert_eq!(
            residue.stop(),
            Report {
                freed: 0,
                unwiped: 0
            }
        );
    }
}
