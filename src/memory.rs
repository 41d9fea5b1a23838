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
/// straddled two cache lines.
pub struct LineAligned;

/// Size from which [`LineAligned`] aligns blocks to a cache line.
pub const ALIGN_FROM: usize = 64 << 10;

impl LineAligned {
    fn layout(layout: std::alloc::Layout) -> std::alloc::Layout {
        match layout.size() >= ALIGN_FROM && layout.align() < 64 {
            // SAFETY: 64 is a power of two and the size is unchanged (and was valid before).
            true => unsafe { std::alloc::Layout::from_size_align_unchecked(layout.size(), 64) },
            false => layout,
        }
    }
}

// SAFETY: every call goes to the system allocator with a layout at least as aligned as asked
// for; `dealloc` and `realloc` derive the same layout from the block's size as `alloc` did.
unsafe impl std::alloc::GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract (non-zero size) holds for the adjusted layout.
        unsafe { std::alloc::System.alloc(Self::layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(Self::layout(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` with this adjusted layout.
        unsafe { std::alloc::System.dealloc(ptr, Self::layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let (old, new) = (
            Self::layout(layout),
            Self::layout(std::alloc::Layout::from_size_align(new_size, layout.align()).unwrap_or(layout)),
        );
        if old.align() == new.align() {
            // SAFETY: the block was allocated with `old`, and the alignment does not change.
            return unsafe { std::alloc::System.realloc(ptr, old, new_size) };
        }
        // SAFETY: a new block with the new layout, the common prefix copied, the old one freed.
        unsafe {
            let p = std::alloc::System.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                std::alloc::System.dealloc(ptr, old);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

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
                    assert_eq!(p as usize % 64, 0, "{size} bytes");
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
                    assert_eq!(b as usize % 64, 0, "{size} bytes");
                    assert!(std::slice::from_raw_parts(b, size).iter().all(|&v| v == 0));
                    a.dealloc(b, layout);
                }
            }
        }
    }
}
