//! Physical frame allocator: one bit per pseudo-physical page (1 = in use)
//! over a caller-provided word slice. Pure logic, tested on the host; the
//! kernel keeps the bitmap in pages taken from the free region at boot.
//!
//! Frames are numbered like PFNs: `0..nr_frames`. Allocation scans from a
//! rotating hint (first fit after the last allocation), so freshly freed
//! frames are not handed out again at once — a use-after-free of a page
//! shows up as stale data rather than silently working.

/// Why a frame operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free frame (or no free run of the requested length).
    OutOfMemory,
    /// The frame number is outside the allocator.
    OutOfRange(u64),
    /// Freeing a frame that is not allocated (a double free: our bug).
    NotAllocated(u64),
}

/// Bitmap frame allocator over `words` (`64 * words.len() >= nr_frames`).
pub struct FrameAllocator<'a> {
    words: &'a mut [u64],
    nr_frames: u64,
    free: u64,
    hint: u64,
}

impl<'a> FrameAllocator<'a> {
    /// Words needed for `nr_frames` frames.
    pub const fn words_for(nr_frames: u64) -> usize {
        nr_frames.div_ceil(64) as usize
    }

    /// All frames start **in use**; hand free ranges over with
    /// [`release_range`](Self::release_range).
    pub fn new(words: &'a mut [u64], nr_frames: u64) -> FrameAllocator<'a> {
        assert!(
            words.len() >= Self::words_for(nr_frames),
            "frame bitmap too small"
        );
        words.fill(u64::MAX);
        FrameAllocator {
            words,
            nr_frames,
            free: 0,
            hint: 0,
        }
    }

    /// Frames managed (`0..nr_frames`).
    pub fn nr_frames(&self) -> u64 {
        self.nr_frames
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    fn is_used(&self, f: u64) -> bool {
        self.words[(f / 64) as usize] & (1 << (f % 64)) != 0
    }

    fn set(&mut self, f: u64, used: bool) {
        let w = &mut self.words[(f / 64) as usize];
        if used {
            *w |= 1 << (f % 64);
        } else {
            *w &= !(1 << (f % 64));
        }
    }

    /// Marks `start..end` free (boot: the region after the kernel's own
    /// bootstrap data). Frames already free stay free.
    pub fn release_range(&mut self, start: u64, end: u64) {
        for f in start..end.min(self.nr_frames) {
            if self.is_used(f) {
                self.set(f, false);
                self.free += 1;
            }
        }
    }

    /// Marks one frame in use whatever its state (boot: pages we found in
    /// use, e.g. the XenStore ring). Returns whether it was free.
    pub fn reserve(&mut self, f: u64) -> bool {
        if f >= self.nr_frames || self.is_used(f) {
            return false;
        }
        self.set(f, true);
        self.free -= 1;
        true
    }

    /// One free frame.
    pub fn alloc(&mut self) -> Result<u64, FrameError> {
        if self.free == 0 {
            return Err(FrameError::OutOfMemory);
        }
        let nwords = Self::words_for(self.nr_frames);
        let start = (self.hint / 64) as usize;
        for i in 0..=nwords {
            let wi = (start + i) % nwords;
            let mut w = self.words[wi];
            if i == 0 {
                // Bits below the hint in its own word come last (i == nwords).
                w |= (1u64 << (self.hint % 64)) - 1;
            }
            if w != u64::MAX {
                let f = wi as u64 * 64 + u64::from((!w).trailing_zeros());
                if f < self.nr_frames {
                    self.set(f, true);
                    self.free -= 1;
                    self.hint = f + 1;
                    return Ok(f);
                }
            }
        }
        Err(FrameError::OutOfMemory)
    }

    /// `n` physically contiguous free frames (first fit); returns the first.
    pub fn alloc_contiguous(&mut self, n: u64) -> Result<u64, FrameError> {
        if n == 0 || n > self.free {
            return Err(FrameError::OutOfMemory);
        }
        let mut run = 0;
        let mut f = 0;
        while f < self.nr_frames {
            // Skip whole used words quickly.
            if f % 64 == 0 && self.words[(f / 64) as usize] == u64::MAX {
                run = 0;
                f += 64;
                continue;
            }
            if self.is_used(f) {
                run = 0;
            } else {
                run += 1;
                if run == n {
                    let first = f + 1 - n;
                    for g in first..=f {
                        self.set(g, true);
                    }
                    self.free -= n;
                    return Ok(first);
                }
            }
            f += 1;
        }
        Err(FrameError::OutOfMemory)
    }

    /// Returns a frame.
    pub fn free(&mut self, f: u64) -> Result<(), FrameError> {
        if f >= self.nr_frames {
            return Err(FrameError::OutOfRange(f));
        }
        if !self.is_used(f) {
            return Err(FrameError::NotAllocated(f));
        }
        self.set(f, false);
        self.free += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn starts_used_then_release() {
        let mut w = vec![0u64; 2];
        let mut a = FrameAllocator::new(&mut w, 100);
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.alloc(), Err(FrameError::OutOfMemory));
        a.release_range(10, 200); // clipped at 100
        assert_eq!(a.free_frames(), 90);
        a.release_range(10, 20); // idempotent
        assert_eq!(a.free_frames(), 90);
        assert!(a.reserve(50));
        assert!(!a.reserve(50));
        assert!(!a.reserve(5));
        assert!(!a.reserve(100));
        assert_eq!(a.free_frames(), 89);
    }

    #[test]
    fn alloc_all_unique_then_free_all() {
        let mut w = vec![0u64; FrameAllocator::words_for(130)];
        let mut a = FrameAllocator::new(&mut w, 130);
        a.release_range(3, 130);
        let mut got: Vec<u64> = (0..127).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.alloc(), Err(FrameError::OutOfMemory));
        got.sort();
        assert_eq!(got, (3..130).collect::<Vec<_>>());
        for f in got {
            a.free(f).unwrap();
        }
        assert_eq!(a.free_frames(), 127);
        assert_eq!(a.free(3), Err(FrameError::NotAllocated(3)));
        assert_eq!(a.free(130), Err(FrameError::OutOfRange(130)));
    }

    #[test]
    fn freed_frame_not_reused_immediately() {
        let mut w = vec![0u64; 1];
        let mut a = FrameAllocator::new(&mut w, 64);
        a.release_range(0, 64);
        let f = a.alloc().unwrap();
        a.free(f).unwrap();
        assert_ne!(a.alloc().unwrap(), f);
    }

    #[test]
    fn double_free_is_an_error() {
        let mut w = vec![0u64; 1];
        let mut a = FrameAllocator::new(&mut w, 64);
        a.release_range(0, 64);
        let f = a.alloc().unwrap();
        a.free(f).unwrap();
        assert_eq!(a.free(f), Err(FrameError::NotAllocated(f)));
        assert_eq!(a.free_frames(), 64);
    }

    #[test]
    fn contiguous_runs() {
        let mut w = vec![0u64; 4];
        let mut a = FrameAllocator::new(&mut w, 256);
        a.release_range(0, 256);
        // Fragment: use every 10th frame below 200.
        for f in (0..200).step_by(10) {
            assert!(a.reserve(f));
        }
        let first = a.alloc_contiguous(9).unwrap();
        assert_eq!(first, 1);
        // Free runs now: 9 frames between the reserved ones, 191..256.
        let big = a.alloc_contiguous(40).unwrap();
        assert_eq!(big, 191);
        assert_eq!(a.alloc_contiguous(26), Err(FrameError::OutOfMemory));
        assert_eq!(a.alloc_contiguous(0), Err(FrameError::OutOfMemory));
        for f in big..big + 40 {
            a.free(f).unwrap();
        }
        assert_eq!(a.alloc_contiguous(65).unwrap(), 191);
    }
}
