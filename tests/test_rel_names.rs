//! Names are not paths: any lock name maps to one file directly
//! inside the lock directory, at most 255 bytes long, and distinct names map to distinct files,
//! also on a case-insensitive filesystem.

mod support;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use lockmacro_runtime::Lock;
use proptest::prelude::*;
use support::SplitMix;

/// `.dir()` does no I/O, so the directory need not exist.
const DIR: &str = "/var/tmp/lockmacro-names/dir";

/// The lock file of `name` in `DIR`, after checking it is a plain file name directly inside it.
fn checked_path(name: &str) -> PathBuf {
    let dir = Path::new(DIR);
    let path = Lock::new(name).dir(dir).path().to_owned();
    assert_eq!(path.parent(), Some(dir), "outside the directory: {name:?}");
    let file = path
        .file_name()
        .unwrap_or_else(|| panic!("no file name for {name:?}"));
    let bytes = file.as_bytes();
    assert!(bytes.len() <= 255, "{} bytes for {name:?}", bytes.len());
    assert!(
        !bytes.contains(&b'/') && !bytes.contains(&0),
        "separator or NUL for {name:?}"
    );
    assert!(
        file != OsStr::new(".") && file != OsStr::new(".."),
        "{file:?} for {name:?}"
    );
    assert_eq!(
        path.components().next_back(),
        Some(Component::Normal(file)),
        "{name:?}"
    );
    assert_eq!(path.components().count(), dir.components().count() + 1);
    path
}

/// The key under which two files collide on a case-insensitive filesystem.
fn folded(path: &Path) -> String {
    path.to_string_lossy().to_lowercase()
}

/// Characters that have broken name mappings before: separators, dots, NUL, case pairs,
/// combining marks, a character whose lowercase is longer, and plain ones.
const TRICKY: &[char] = &[
    '\0',
    '/',
    '\\',
    '.',
    ':',
    '*',
    '?',
    ' ',
    '\n',
    'a',
    'A',
    'z',
    'Z',
    '0',
    '-',
    '_',
    '\u{e9}',
    'e',
    '\u{301}',
    '\u{130}',
    '\u{fb03}',
    '\u{1f512}',
    '\u{feff}',
];

fn tricky_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(TRICKY), 0..40)
            .prop_map(String::from_iter),
        4 => any::<String>(),
        1 => prop::collection::vec(prop::sample::select(TRICKY), 200..11_000)
            .prop_map(String::from_iter),
    ]
}

/// Near-misses of `name`: what a lossy mapping would merge with it.
fn near_misses(name: &str) -> Vec<String> {
    let mut out = vec![
        name.to_uppercase(),
        name.to_lowercase(),
        format!("{name}\0"),
        format!("{name}/"),
        format!("./{name}"),
        name.replace('/', "_"),
        name.replace('\\', "/"),
    ];
    if let Some((i, c)) = name.char_indices().last() {
        out.push(name[..i].to_owned());
        let other = if c == 'x' { 'y' } else { 'x' };
        out.push(format!("{}{other}", &name[..i]));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_name_is_a_short_file_directly_inside_the_directory(name in tricky_name()) {
        checked_path(&name);
    }

    #[test]
    fn distinct_names_give_distinct_paths(a in tricky_name(), b in tricky_name()) {
        let mut names = near_misses(&a);
        names.push(b);
        let pa = checked_path(&a);
        for other in names.iter().filter(|n| **n != a) {
            let po = checked_path(other);
            prop_assert_ne!(&pa, &po, "{:?} and {:?}", a, other);
            prop_assert_ne!(folded(&pa), folded(&po), "case-fold: {:?} and {:?}", a, other);
        }
    }
}

/// Fixed hostile cases, each pair distinct, plus every prefix-truncation trap.
#[test]
fn fixed_hostile_names() {
    let long = "x".repeat(10_000);
    let long_a = format!("{long}a");
    let long_b = format!("{long}b");
    let long_multibyte = "\u{1f512}".repeat(2_600); // 10.4 kB of four-byte characters
    let names: Vec<&str> = vec![
        "",
        ".",
        "..",
        "...",
        "/",
        "//",
        "/etc/passwd",
        "../../etc/passwd",
        "a/../b",
        "\0",
        "\0\0",
        "a\0b",
        "a/b",
        "a\\b",
        "a_b",
        "CON",
        "con",
        "con.txt",
        "CON.TXT",
        "NUL",
        "nul",
        "aux",
        "COM1",
        "LPT1",
        "A",
        "a",
        "\u{e9}",   // é, NFC
        "e\u{301}", // é, NFD
        "\u{c5}",   // Å
        "\u{212b}", // Angstrom sign, which NFC maps to Å
        "\u{130}",  // İ, whose lowercase is two characters
        "i\u{307}",
        "stra\u{df}e",
        "STRASSE",
        "strasse",
        long.as_str(),
        long_a.as_str(),
        long_b.as_str(),
        long_multibyte.as_str(),
    ];
    let mut seen: HashMap<String, &str> = HashMap::new();
    for name in &names {
        let path = checked_path(name);
        if let Some(first) = seen.insert(folded(&path), name) {
            panic!("{first:?} and {name:?} share the file {}", path.display());
        }
    }
    assert_eq!(seen.len(), names.len());
}

#[test]
fn ten_thousand_generated_names_never_collide() {
    // A deterministic generator, so the 10 000 names are the same on every run.
    let mut rng = SplitMix(0x6c6f_636b_6d61_6372);
    let mut names = std::collections::HashSet::new();
    while names.len() < 10_000 {
        // Short names over a tiny alphabet: many differ by one character, case or position.
        let len = rng.index(12);
        let name: String = (0..len).map(|_| TRICKY[rng.index(TRICKY.len())]).collect();
        names.insert(name);
    }
    let mut files: HashMap<String, &String> = HashMap::new();
    for name in &names {
        let path = checked_path(name);
        if let Some(first) = files.insert(folded(&path), name) {
            panic!("{first:?} and {name:?} share the file {}", path.display());
        }
    }
    assert_eq!(files.len(), 10_000);
}

/// On disk: hostile names create their files inside the directory and nowhere else.
#[test]
fn hostile_names_create_files_only_inside_the_directory() {
    let outer = tempfile::tempdir().expect("temp dir");
    let dir = outer.path().join("locks");
    let long = "\u{1f512}".repeat(2_600);
    let names = [
        "..",
        "../escape",
        "/",
        "a/b",
        "\0",
        "CON",
        "A",
        "a",
        long.as_str(),
    ];
    let guards: Vec<_> = names
        .iter()
        .map(|name| {
            Lock::new(*name)
                .dir(&dir)
                .try_acquire()
                .unwrap_or_else(|e| panic!("lock {name:?}: {e}"))
        })
        .collect();
    assert_eq!(
        std::fs::read_dir(&dir).expect("list").count(),
        names.len(),
        "one file per name"
    );
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        outside,
        [OsStr::new("locks")],
        "nothing outside the directory"
    );
    drop(guards);
}
