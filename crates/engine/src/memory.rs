//! Process-wide allocator tuning for the tensor-heavy paths.

/// Keeps freed buffers of up to 32 MiB in the heap for reuse instead of handing them back to the OS.
///
/// Every forward pass allocates activation buffers of 1-30 MB. With glibc's defaults many of them
/// are fresh `mmap`s, and each first touch of a 4 KiB page then costs a page fault and a zeroing:
/// about a quarter of a million faults for 50 Inception-v3 images, and block concatenation at
/// half speed. Fixing the mmap threshold at its maximum (32 MiB) and not trimming the heap below
/// 1 GiB lets those buffers be reused. No effect on other platforms or allocators.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
        // exists (from `main`), and rejects out-of-range values by returning 0.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        };
        if !ok {
            tracing::debug!("glibc rejected the allocator settings; keeping its defaults");
        }
    }
}

/// The system allocator, except that blocks of [`ALIGN_FROM`] bytes or more start on a 64-byte
/// cache line.
///
/// Activation buffers are such blocks. glibc aligns them to 16 bytes only, so three times in
/// four each 16-float row of a conv's output tile (and many 8-float loads of the next layer)
/// straddled two cache lines. A large block is an ordinary `malloc` block [`LINE`] bytes longer,
/// whose start is moved up to the next line; the 8 bytes before that start hold the `malloc`
/// block's address. (Asking glibc for 64-byte alignment instead, `posix_memalign`, split the
/// heap into fragments that it did not reuse: twice the peak memory when building a cache.)
pub struct LineAligned;

/// Size from which [`LineAligned`] aligns blocks to a cache line.
pub const ALIGN_FROM: usize = 64 << 10;

/// A cache line, in bytes.
pub const LINE: usize = 64;

type Layout = std::alloc::Layout;

impl LineAligned {
    /// `true` for the blocks this allocator moves to a line.
    fn moved(layout: Layout) -> bool {
        layout.size() >= ALIGN_FROM && layout.align() <= 16
    }

    /// The `malloc` block behind a moved block of `size` bytes (`None` if that size is too large
    /// for any block, so the allocation fails).
    fn raw_layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size.checked_add(LINE)?, 16).ok()
    }

    /// Moves a `malloc` block's start up to the next line and records where the block began.
    ///
    /// # Safety
    /// `raw` must be null or a block of at least `LINE` bytes more than the caller uses,
    /// aligned to 16 bytes.
    unsafe fn place(raw: *mut u8) -> *mut u8 {
        if raw.is_null() {
            return raw;
        }
        // 16 to 64 bytes up: room for the address below the new start.
        let offset = LINE - (raw as usize % LINE);
        // SAFETY: `raw + offset` lies inside the block, and 8 bytes below it too (offset >= 16).
        unsafe {
            let p = raw.add(offset);
            p.cast::<usize>().sub(1).write_unaligned(raw as usize);
            p
        }
    }

    /// The `malloc` block behind a moved block.
    ///
    /// # Safety
    /// `p` must have come from [`Self::place`].
    unsafe fn raw(p: *mut u8) -> *mut u8 {
        // SAFETY: `place` wrote the address there.
        unsafe { p.cast::<usize>().sub(1).read_unaligned() as *mut u8 }
    }
}

// SAFETY: blocks that are not moved go to the system allocator unchanged; a moved block is a
// system block of `size + LINE` bytes, and `dealloc`/`realloc` find it from the address stored
// below the moved start, with the same layout (decided by the size alone).
unsafe impl std::alloc::GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract (non-zero size) holds for both layouts.
        unsafe {
            match (Self::moved(layout), Self::raw_layout(layout.size())) {
                (true, Some(raw)) => Self::place(std::alloc::System.alloc(raw)),
                (true, None) => std::ptr::null_mut(),
                (false, _) => std::alloc::System.alloc(layout),
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            match (Self::moved(layout), Self::raw_layout(layout.size())) {
                (true, Some(raw)) => Self::place(std::alloc::System.alloc_zeroed(raw)),
                (true, None) => std::ptr::null_mut(),
                (false, _) => std::alloc::System.alloc_zeroed(layout),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, so it was moved exactly when
        // `moved` says so (and then its raw layout existed).
        unsafe {
            match (Self::moved(layout), Self::raw_layout(layout.size())) {
                (true, Some(raw)) => std::alloc::System.dealloc(Self::raw(ptr), raw),
                (true, None) => {}
                (false, _) => std::alloc::System.dealloc(ptr, layout),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid with this alignment.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `ptr` came from this allocator with `layout`; a new block gets the common
        // prefix of the contents before the old one is freed.
        unsafe {
            if !Self::moved(layout) && !Self::moved(new) {
                return std::alloc::System.realloc(ptr, layout, new_size);
            }
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::GlobalAlloc;

    #[test]
    fn large_blocks_start_on_a_cache_line_and_keep_their_contents_through_realloc() {
        let a = LineAligned;
        // SAFETY: each block is written inside its size and freed once, with its current layout.
        unsafe {
            let small = Layout::from_size_align(4000, 4).unwrap();
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..4000 {
                *p.add(i) = (i % 251) as u8;
            }
            // Small to large, large to larger, large back to small: contents and alignment kept.
            let mut layout = small;
            let mut p = p;
            for size in [ALIGN_FROM + 100, 3 * ALIGN_FROM, 3000] {
                p = a.realloc(p, layout, size);
                assert!(!p.is_null());
                layout = Layout::from_size_align(size, 4).unwrap();
                if size >= ALIGN_FROM {
                    assert_eq!(p as usize % LINE, 0, "{size} bytes");
                }
                for i in 0..3000 {
                    assert_eq!(*p.add(i), (i % 251) as u8, "byte {i} after realloc to {size}");
                }
            }
            a.dealloc(p, layout);
            for size in [ALIGN_FROM, ALIGN_FROM + 4, 5 << 20] {
                let layout = Layout::from_size_align(size, 4).unwrap();
                let blocks: Vec<*mut u8> = (0..4).map(|_| a.alloc_zeroed(layout)).collect();
                for &b in &blocks {
                    assert_eq!(b as usize % LINE, 0, "{size} bytes");
                    assert!(std::slice::from_raw_parts(b, size).iter().all(|&v| v == 0));
                    a.dealloc(b, layout);
                }
            }
        }
    }
}
