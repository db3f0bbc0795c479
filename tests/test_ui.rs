#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
    // `backend = "postgres"` without the runtime's `postgres` feature: one clear error.
    #[cfg(not(feature = "postgres"))]
    t.compile_fail("tests/ui-nopg/*.rs");
}
