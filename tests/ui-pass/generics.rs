#![deny(warnings)]

use std::fmt::Display;

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-ui-pass-generics", wait)]
fn describe<T, const N: usize>(items: [T; N]) -> String
where
    T: Display + Clone,
{
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    parts.join(",")
}

#[exclusive(name = "lockmacro-ui-pass-generics", wait)]
fn sum(values: impl IntoIterator<Item = u32>) -> impl Display + Clone {
    values.into_iter().sum::<u32>()
}

#[exclusive(name = "lockmacro-ui-pass-generics", wait)]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[exclusive(name = "lockmacro-ui-pass-generics", on_conflict = "panic")]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() {
        a
    } else {
        b
    }
}

#[exclusive(name = "lockmacro-ui-pass-generics", on_conflict = "panic")]
fn first<'a>(items: &'a [u32], label: &str) -> Option<&'a u32> {
    assert!(!label.is_empty());
    items.first()
}

/// # Safety
/// `ptr` must be valid for reads.
#[exclusive(name = "lockmacro-ui-pass-generics", wait)]
unsafe fn read(ptr: *const u32) -> u32 {
    unsafe { *ptr }
}

fn main() {
    assert_eq!(describe([1, 2, 3]), "1,2,3");
    assert_eq!(sum(vec![1, 2, 3]).to_string(), "6");
    assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
    let owned = String::from("longer");
    assert_eq!(longest(&owned, "short"), "longer");
    assert_eq!(first(&[7, 8], "first"), Some(&7));
    let value = 9;
    // SAFETY: `value` is a live local.
    assert_eq!(unsafe { read(&value) }, 9);
}
