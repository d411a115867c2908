//! CRC-32 (IEEE, as zlib and crc32fast compute it) for the table's
//! checksum, on the login path without asking the standard library which
//! CPU features exist.
//!
//! crc32fast is fast, but before its first checksum it has the standard
//! library detect every feature it might use (PCLMULQDQ, SSE4.1, SSSE3,
//! AVX2, AVX-512, VPCLMULQDQ): several CPUID instructions, and in a virtual
//! machine each CPUID exits to the hypervisor. The PAM module runs in a
//! fresh process for every login, so every login paid for that detection
//! (about as much as validating a 1,000-reservation table;
//! docs/benchmarks.md, "Cold login"). Here one CPUID (leaf 1) answers the
//! only question: PCLMULQDQ and SSE4.1. With them, whole 16-byte blocks are
//! folded with carry-less multiplication (the algorithm of Gopal et al.,
//! "Fast CRC computation for generic polynomials using PCLMULQDQ", Intel
//! 2009, as crc32fast's SSE kernel implements it; same constants); the last
//! few bytes, and inputs shorter than 64 bytes, go through a byte table.
//! Without them (or off x86_64), crc32fast does the work.

/// The reflected IEEE polynomial.
const POLY: u32 = 0xEDB8_8320;

/// The byte-at-a-time table.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Continues `crc` (a finished CRC-32 of what came before; 0 for nothing)
/// over `data`, a byte at a time.
fn bytewise(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Continues `crc` (a finished CRC-32 of what came before; 0 for nothing)
/// over `data`.
#[must_use]
pub fn update(crc: u32, data: &[u8]) -> u32 {
    if data.len() < 64 {
        return bytewise(crc, data);
    }
    #[cfg(target_arch = "x86_64")]
    if clmul::available() {
        // SAFETY: `available` checked that the CPU has PCLMULQDQ and
        // SSE4.1, the features `fold` is compiled for (SSE2 is part of
        // x86_64).
        return unsafe { clmul::fold(crc, data) };
    }
    let mut hasher = crc32fast::Hasher::new_with_initial(crc);
    hasher.update(data);
    hasher.finalize()
}

#[cfg(target_arch = "x86_64")]
mod clmul {
    use core::arch::x86_64 as arch;
    use std::sync::atomic::{AtomicU8, Ordering};

    const K1: i64 = 0x1_5444_2bd4;
    const K2: i64 = 0x1_c6e4_1596;
    const K3: i64 = 0x1_7519_97d0;
    const K4: i64 = 0x0_ccaa_009e;
    const K5: i64 = 0x1_63cd_6124;
    const P_X: i64 = 0x1_DB71_0641;
    const U_PRIME: i64 = 0x1_F701_1641;

    /// 0: not asked yet, 1: yes, 2: no.
    static AVAILABLE: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has PCLMULQDQ and SSE4.1: CPUID leaf 1, ECX bits 1
    /// and 19, asked once per process.
    pub fn available() -> bool {
        match AVAILABLE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ecx = arch::__cpuid(1).ecx;
                let yes = ecx & (1 << 1) != 0 && ecx & (1 << 19) != 0;
                AVAILABLE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }

    /// Loads the next 16 bytes of `a` and advances past them.
    #[inline]
    fn get(a: &mut &[u8]) -> arch::__m128i {
        // SAFETY: `a[..16]` is 16 readable bytes (indexing panics
        // otherwise, and the callers' loop conditions rule that out);
        // `_mm_loadu_si128` needs no alignment; SSE2 is part of x86_64.
        let r = unsafe { arch::_mm_loadu_si128(a[..16].as_ptr().cast::<arch::__m128i>()) };
        *a = &a[16..];
        r
    }

    #[target_feature(enable = "pclmulqdq", enable = "sse2", enable = "sse4.1")]
    fn reduce128(a: arch::__m128i, b: arch::__m128i, keys: arch::__m128i) -> arch::__m128i {
        let t1 = arch::_mm_clmulepi64_si128(a, keys, 0x00);
        let t2 = arch::_mm_clmulepi64_si128(a, keys, 0x11);
        arch::_mm_xor_si128(arch::_mm_xor_si128(b, t1), t2)
    }

    /// Continues `crc` over `data` (at least 64 bytes).
    ///
    /// # Safety
    /// The CPU must have PCLMULQDQ and SSE4.1 ([`available`]).
    #[target_feature(enable = "pclmulqdq", enable = "sse2", enable = "sse4.1")]
    pub unsafe fn fold(crc: u32, mut data: &[u8]) -> u32 {
        debug_assert!(data.len() >= 64);
        // Fold by 4 over 64-byte groups.
        let mut x3 = get(&mut data);
        let mut x2 = get(&mut data);
        let mut x1 = get(&mut data);
        let mut x0 = get(&mut data);
        x3 = arch::_mm_xor_si128(x3, arch::_mm_cvtsi32_si128(!crc as i32));
        let k1k2 = arch::_mm_set_epi64x(K2, K1);
        while data.len() >= 64 {
            x3 = reduce128(x3, get(&mut data), k1k2);
            x2 = reduce128(x2, get(&mut data), k1k2);
            x1 = reduce128(x1, get(&mut data), k1k2);
            x0 = reduce128(x0, get(&mut data), k1k2);
        }
        let k3k4 = arch::_mm_set_epi64x(K4, K3);
        let mut x = reduce128(x3, x2, k3k4);
        x = reduce128(x, x1, k3k4);
        x = reduce128(x, x0, k3k4);
        // Fold by 1 over the remaining whole 16-byte blocks.
        while data.len() >= 16 {
            x = reduce128(x, get(&mut data), k3k4);
        }
        // 128 bits to 64.
        let x = arch::_mm_xor_si128(
            arch::_mm_clmulepi64_si128(x, k3k4, 0x10),
            arch::_mm_srli_si128(x, 8),
        );
        let x = arch::_mm_xor_si128(
            arch::_mm_clmulepi64_si128(
                arch::_mm_and_si128(x, arch::_mm_set_epi32(0, 0, 0, !0)),
                arch::_mm_set_epi64x(0, K5),
                0x00,
            ),
            arch::_mm_srli_si128(x, 4),
        );
        // Barrett reduction from 64 bits to 32 (bit-reflected).
        let pu = arch::_mm_set_epi64x(U_PRIME, P_X);
        let t1 = arch::_mm_clmulepi64_si128(
            arch::_mm_and_si128(x, arch::_mm_set_epi32(0, 0, 0, !0)),
            pu,
            0x10,
        );
        let t2 = arch::_mm_clmulepi64_si128(
            arch::_mm_and_si128(t1, arch::_mm_set_epi32(0, 0, 0, !0)),
            pu,
            0x00,
        );
        let crc = !(arch::_mm_extract_epi32(arch::_mm_xor_si128(x, t2), 1) as u32);
        // The last 0..=15 bytes.
        super::bytewise(crc, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(parts: &[&[u8]]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for p in parts {
            h.update(p);
        }
        h.finalize()
    }

    #[test]
    fn known_answers() {
        assert_eq!(update(0, b""), 0);
        assert_eq!(update(0, b"123456789"), 0xCBF4_3926);
        let long = b"The quick brown fox jumps over the lazy dog. ".repeat(10);
        assert_eq!(update(0, &long), reference(&[&long]));
    }

    #[test]
    fn agrees_with_crc32fast_for_every_length_and_split() {
        // A deterministic spread of bytes (xorshift).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in (0..300).chain([511, 512, 513, 1023, 4096, 4999, 5000]) {
            let data = &bytes[..len];
            assert_eq!(update(0, data), reference(&[data]), "length {len}");
            for split in [0, 1, 12, 15, 16, 63, 64, 65, len / 2, len] {
                let split = split.min(len);
                let (a, b) = data.split_at(split);
                assert_eq!(
                    update(update(0, a), b),
                    reference(&[a, b]),
                    "length {len} split at {split}"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_folding_path_is_the_one_taken_here() {
        // Every x86_64 machine this runs on since 2010 has PCLMULQDQ and
        // SSE4.1; if this fails, the fallback (crc32fast) is what the
        // other tests checked.
        assert!(clmul::available());
    }
}
