//! Page patterns and checksums shared by xf-gnt-map and the guest tests.
//!
//! Pattern with seed `s`: byte `i` of the page is `(s + i) & 0xff`.
//! Checksum: 64-bit FNV-1a over the bytes, printed as 16 hex digits.

pub fn pattern_byte(seed: u8, i: usize) -> u8 {
    seed.wrapping_add(i as u8)
}

pub fn fill(buf: &mut [u8], seed: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, i);
    }
}

/// Result of comparing a buffer with a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub first_offset: usize,
    pub got: u8,
    pub want: u8,
    pub differing: usize,
}

pub fn check(buf: &[u8], seed: u8) -> Result<(), Mismatch> {
    let mut first = None;
    let mut differing = 0;
    for (i, &b) in buf.iter().enumerate() {
        let want = pattern_byte(seed, i);
        if b != want {
            differing += 1;
            first.get_or_insert((i, b, want));
        }
    }
    match first {
        None => Ok(()),
        Some((first_offset, got, want)) => Err(Mismatch {
            first_offset,
            got,
            want,
            differing,
        }),
    }
}

pub fn fnv1a64(buf: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in buf {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `"00 01 02 03 04 05 06 07"`: the first `n` bytes, space separated.
pub fn hex_prefix(buf: &[u8], n: usize) -> String {
    buf.iter()
        .take(n)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_wraps() {
        let mut p = [0u8; 4096];
        fill(&mut p, 0xfe);
        assert_eq!(&p[..4], &[0xfe, 0xff, 0x00, 0x01]);
        assert_eq!(p[4095], 0xfe_u8.wrapping_add(0xff));
        assert_eq!(check(&p, 0xfe), Ok(()));
        p[10] ^= 1;
        p[20] ^= 1;
        let m = check(&p, 0xfe).unwrap_err();
        assert_eq!((m.first_offset, m.differing), (10, 2));
        assert_eq!(m.want, 0xfe_u8.wrapping_add(10));
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hex_prefix_format() {
        assert_eq!(hex_prefix(&[0, 1, 0xab], 8), "00 01 ab");
        assert_eq!(hex_prefix(&[0u8; 16], 2), "00 00");
    }
}
