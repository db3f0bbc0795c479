//! Lock names to file names.
//!
//! A name is arbitrary text chosen by the program; a file name must stay inside the lock
//! directory, fit in 255 bytes, survive case-insensitive filesystems and Windows' reserved
//! device names, and be distinct for distinct names. We keep a short readable prefix (lowercase
//! ASCII letters, digits, `-` and `_`; everything else becomes `_`) and append a 128-bit FNV-1a
//! hash of the raw name's bytes, which is stable across Rust releases and platforms (unlike
//! `DefaultHasher`). The hash, not the prefix, makes names distinct: `"A"` and `"a"` share a
//! prefix but not a hash.

const PREFIX_MAX: usize = 64;

/// The file name (not a path) for the lock `name`, for example `nightly-backup-<32 hex>.lock`.
pub(crate) fn file_name(name: &str) -> String {
    let mut prefix: String = name
        .chars()
        .take(PREFIX_MAX)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if prefix.is_empty() {
        prefix.push_str("lock");
    }
    format!("{prefix}-{:032x}.lock", fnv1a_128(name.as_bytes()))
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_prefix_and_stable_hash() {
        let f = file_name("nightly-backup");
        assert!(f.starts_with("nightly-backup-"), "{f}");
        assert!(f.ends_with(".lock"));
        // Pinned: changing the mapping would split old and new binaries into different locks.
        assert_eq!(f, "nightly-backup-05c089ed8b3d62fd0d2a5b57220c7887.lock");
    }

    #[test]
    fn fnv1a_128_matches_the_reference_vectors() {
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    #[test]
    fn hostile_names_stay_inside_and_short() {
        let long = "x".repeat(10_000);
        for name in [
            "../x",
            "a/b",
            "a\0b",
            "CON",
            "con.txt",
            "",
            ".",
            "..",
            long.as_str(),
        ] {
            let f = file_name(name);
            assert!(
                !f.contains('/') && !f.contains('\\') && !f.contains('\0'),
                "{f:?}"
            );
            assert!(!f.starts_with('.'), "{f:?}");
            assert!(f.len() <= 255, "{}", f.len());
        }
    }

    #[test]
    fn case_pairs_differ() {
        assert_ne!(file_name("A"), file_name("a"));
        assert_ne!(file_name("CON"), file_name("con"));
    }
}
