//! Step 1 of 3, syntax: the attribute's tokens to [`Args`], each key's value as written, with
//! where its key and its value were written.
//!
//! Only what a value *is* gets decided here: a string, an integer of the key's type, one of the
//! key's words, a duration, a path, a bare flag, an expression (`name` only); and that no key is
//! given twice. What the values
//! mean together and for the annotated function is `check`'s business.

use std::num::NonZeroU32;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::{Expr, Lit, LitStr};

const KEYS: &str = "`name`, `wait`, `timeout`, `dir`, `path`, `scope`, `cleanup`, `shared`, \
                    `slots`, `on_conflict`, `exit_code`, `notice`, `backend`, `key`, `lease`, \
                    `on_lost`, `crate`";

/// One argument as written.
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    /// The key, like `timeout` in `timeout = "5s"`.
    pub(crate) key: Span,
    /// The value, like `"5s"`; the key again for a bare flag.
    pub(crate) span: Span,
}

impl<T> Arg<T> {
    /// Another value written at the same place.
    fn with<U>(&self, value: U) -> Arg<U> {
        Arg {
            value,
            key: self.key,
            span: self.span,
        }
    }
}

/// The words of `on_conflict = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnConflict {
    Error,
    Exit,
    Panic,
    Skip,
}

/// The words of `scope = "..."`: whose default directory holds the lock file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The per-user directory (the runtime's default).
    User,
    /// The system-wide directory (the runtime's `Lock::system`).
    System,
}

/// The words of `backend = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    File,
    Postgres,
}

/// The words of `on_lost = "..."`: what a holder does when the lock is lost while held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnLost {
    /// Exit the process (the runtime's default).
    Exit,
    /// Drop the async body and return `Err(Error::Lost)` (the runtime's `OnLost::Report`).
    Cancel,
}

/// The arguments as written; `None` for a key not given.
#[derive(Default)]
pub(crate) struct Args {
    /// A string literal, or any expression but a non-string literal.
    pub(crate) name: Option<Arg<Expr>>,
    pub(crate) wait: Option<Arg<()>>,
    /// In milliseconds.
    pub(crate) timeout: Option<Arg<u64>>,
    pub(crate) dir: Option<Arg<LitStr>>,
    pub(crate) path: Option<Arg<LitStr>>,
    pub(crate) scope: Option<Arg<Scope>>,
    pub(crate) cleanup: Option<Arg<()>>,
    pub(crate) shared: Option<Arg<()>>,
    pub(crate) slots: Option<Arg<NonZeroU32>>,
    pub(crate) on_conflict: Option<Arg<OnConflict>>,
    pub(crate) exit_code: Option<Arg<u8>>,
    pub(crate) notice: Option<Arg<bool>>,
    pub(crate) backend: Option<Arg<BackendKind>>,
    pub(crate) key: Option<Arg<i64>>,
    /// In milliseconds.
    pub(crate) lease: Option<Arg<u64>>,
    pub(crate) on_lost: Option<Arg<OnLost>>,
    pub(crate) krate: Option<Arg<syn::Path>>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
    if let Some(err) = bare_literal(&tokens) {
        return Err(err);
    }
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| args.parse_one(&meta));
    syn::parse::Parser::parse2(parser, tokens)?;
    Ok(args)
}

impl Args {
    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "name" => set(meta, &mut self.name, name(meta)?),
            "wait" => set(meta, &mut self.wait, flag(meta)?),
            "timeout" => set(
                meta,
                &mut self.timeout,
                duration(meta, "timeout = \"250ms\"")?,
            ),
            "dir" => set(meta, &mut self.dir, string(meta, "dir = \"/run/lock\"")?),
            "path" => {
                let arg = string(meta, "path = \"/var/lock/mailsync.lock\"")?;
                set(meta, &mut self.path, arg)
            }
            "scope" => {
                let words = [("user", Scope::User), ("system", Scope::System)];
                let arg = choice(meta, "scope = \"system\"", "`scope`", &words)?;
                set(meta, &mut self.scope, arg)
            }
            "cleanup" => set(meta, &mut self.cleanup, flag(meta)?),
            "shared" => set(meta, &mut self.shared, flag(meta)?),
            "slots" => {
                let expected = "an integer, like `slots = 4`";
                let arg = integer(
                    meta,
                    expected,
                    "`slots` must be at least 1 (and fit in a `u32`)",
                )?;
                set(meta, &mut self.slots, arg)
            }
            "on_conflict" => {
                let words = [
                    ("error", OnConflict::Error),
                    ("exit", OnConflict::Exit),
                    ("panic", OnConflict::Panic),
                    ("skip", OnConflict::Skip),
                ];
                let example = "on_conflict = \"exit\"";
                let arg = choice(meta, example, "`on_conflict` policy", &words)?;
                set(meta, &mut self.on_conflict, arg)
            }
            "exit_code" => {
                let expected = "an integer, like `exit_code = 3`";
                let arg = integer(meta, expected, "`exit_code` must be between 0 and 255")?;
                set(meta, &mut self.exit_code, arg)
            }
            "notice" => set(meta, &mut self.notice, boolean(meta, "notice = false")?),
            "backend" => {
                let words = [
                    ("file", BackendKind::File),
                    ("postgres", BackendKind::Postgres),
                ];
                let arg = choice(meta, "backend = \"postgres\"", "backend", &words)?;
                set(meta, &mut self.backend, arg)
            }
            "key" => {
                let expected = "an integer advisory-lock key, like `key = 42`";
                let arg = integer(
                    meta,
                    expected,
                    "`key` must fit in an `i64` (a PostgreSQL bigint)",
                )?;
                set(meta, &mut self.key, arg)
            }
            "lease" => set(meta, &mut self.lease, duration(meta, "lease = \"10s\"")?),
            "on_lost" => {
                let words = [("exit", OnLost::Exit), ("cancel", OnLost::Cancel)];
                let arg = choice(meta, "on_lost = \"cancel\"", "`on_lost` policy", &words)?;
                set(meta, &mut self.on_lost, arg)
            }
            "crate" => {
                let arg = path(meta, "crate = \"my_reexport::lockmacro_runtime\"")?;
                set(meta, &mut self.krate, arg)
            }
            _ => Err(meta.error(format!(
                "unknown argument `{}`; expected one of {KEYS}",
                path_text(&meta.path)
            ))),
        }
    }
}

fn key_span(meta: &ParseNestedMeta<'_>) -> Span {
    meta.path
        .segments
        .first()
        .map_or_else(Span::call_site, |s| s.ident.span())
}

fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Stores a value, rejecting a key given twice (the error lands on the second key).
fn set<T>(meta: &ParseNestedMeta<'_>, slot: &mut Option<T>, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key_span(meta),
            format!("duplicate `{}` argument", path_text(&meta.path)),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The literal after `key =`, with the key's span; anything else written there is refused as a
/// whole with `expected(what was written)`.
fn literal(
    meta: &ParseNestedMeta<'_>,
    expected: impl FnOnce(&Expr) -> String,
) -> syn::Result<Arg<Lit>> {
    let key = key_span(meta);
    let input = meta.value()?;
    if !input.peek(Lit) {
        let other: Expr = input.parse()?;
        return Err(syn::Error::new_spanned(&other, expected(&other)));
    }
    let lit = input.parse::<Lit>()?;
    Ok(Arg {
        key,
        span: lit.span(),
        value: lit,
    })
}

/// `name = "..."` or `name = <expression>`: a string literal, a constant, or any expression of a
/// string type; a literal of another kind is refused on the literal.
fn name(meta: &ParseNestedMeta<'_>) -> syn::Result<Arg<Expr>> {
    let key = key_span(meta);
    let expr: Expr = meta.value()?.parse()?;
    let mut inner = &expr;
    // `$name:expr` from a `macro_rules!` arrives wrapped in an invisible group.
    while let Expr::Group(group) = inner {
        inner = &group.expr;
    }
    if let Expr::Lit(lit) = inner {
        if !matches!(lit.lit, Lit::Str(_)) {
            return Err(syn::Error::new(
                lit.lit.span(),
                "expected a string literal, like `name = \"nightly-backup\"`",
            ));
        }
    }
    Ok(Arg {
        key,
        span: syn::spanned::Spanned::span(&expr),
        value: expr,
    })
}

/// `#[exclusive("x")]`: a value without its key, refused with what to write instead.
fn bare_literal(tokens: &TokenStream) -> Option<syn::Error> {
    let mut at_start = true;
    for tree in tokens.clone() {
        match &tree {
            TokenTree::Literal(literal) if at_start => {
                let message = match Lit::new(literal.clone()) {
                    Lit::Str(s) => format!(
                        "arguments are `key = value`: for the lock's name, write `name = {}`",
                        quote::ToTokens::to_token_stream(&s)
                    ),
                    _ => format!(
                        "arguments are `key = value`, like `name = \"nightly-backup\"`; expected \
                         one of {KEYS}"
                    ),
                };
                return Some(syn::Error::new(literal.span(), message));
            }
            TokenTree::Punct(p) if p.as_char() == ',' => at_start = true,
            _ => at_start = false,
        }
    }
    None
}

/// The single word written where a literal belongs, like `exit` in `on_conflict = exit`.
fn bare_word(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
            p.path.get_ident().map(ToString::to_string)
        }
        _ => None,
    }
}

/// A bare key like `wait`; `wait = true` or `wait(..)` is refused on the key.
fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<Arg<()>> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        let key = key_span(meta);
        Ok(Arg {
            value: (),
            key,
            span: key,
        })
    } else {
        Err(meta.error(format!(
            "`{}` takes no value: write it alone, like `#[exclusive({0})]`",
            path_text(&meta.path)
        )))
    }
}

/// `key = "string"`; any other literal is refused on the literal.
fn string(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Arg<LitStr>> {
    let arg = literal(meta, |_| {
        format!("expected a string literal, like `{example}`")
    })?;
    match &arg.value {
        Lit::Str(lit) => Ok(arg.with(lit.clone())),
        _ => Err(syn::Error::new(
            arg.span,
            format!("expected a string literal, like `{example}`"),
        )),
    }
}

/// `key = 42` as a `T`: `expected` describes the literal, `out_of_range` the bounds of `T`.
fn integer<T>(meta: &ParseNestedMeta<'_>, expected: &str, out_of_range: &str) -> syn::Result<Arg<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let arg = literal(meta, |_| format!("expected {expected}"))?;
    let Lit::Int(lit) = &arg.value else {
        return Err(syn::Error::new(arg.span, format!("expected {expected}")));
    };
    match lit.base10_parse::<T>() {
        Ok(value) => Ok(arg.with(value)),
        Err(_) => Err(syn::Error::new(arg.span, out_of_range)),
    }
}

/// `key = true` or `key = false`.
fn boolean(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Arg<bool>> {
    let arg = literal(meta, |_| {
        format!("expected `true` or `false`, like `{example}`")
    })?;
    match &arg.value {
        Lit::Bool(lit) => Ok(arg.with(lit.value)),
        _ => Err(syn::Error::new(
            arg.span,
            format!("expected `true` or `false`, like `{example}`"),
        )),
    }
}

/// `key = "word"` with one of `words`; another word is refused on the literal as an unknown
/// `what`.
fn choice<T: Copy>(
    meta: &ParseNestedMeta<'_>,
    example: &str,
    what: &str,
    words: &[(&str, T)],
) -> syn::Result<Arg<T>> {
    let key = path_text(&meta.path);
    let arg = literal(meta, |other| match bare_word(other) {
        Some(word) if words.iter().any(|(w, _)| *w == word) => {
            format!("the value is a string: write `{key} = \"{word}\"`")
        }
        _ => format!(
            "expected {} (a string, in quotes), like `{example}`",
            one_of(words)
        ),
    })?;
    let arg = match &arg.value {
        Lit::Str(lit) => arg.with(lit.clone()),
        _ => {
            return Err(syn::Error::new(
                arg.span,
                format!("expected a string literal, like `{example}`"),
            ))
        }
    };
    let text = arg.value.value();
    match words.iter().find(|(word, _)| *word == text) {
        Some(&(_, value)) => Ok(arg.with(value)),
        None => Err(syn::Error::new(
            arg.span,
            format!("unknown {what} \"{text}\": expected {}", one_of(words)),
        )),
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn one_of<T>(words: &[(&str, T)]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|(word, _)| format!("\"{word}\""))
        .collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `key = "250ms"`, in milliseconds; a malformed duration is refused on the literal.
fn duration(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Arg<u64>> {
    let arg = string(meta, example)?;
    match duration_millis(&arg.value.value()) {
        Some(millis) => Ok(arg.with(millis)),
        None => Err(syn::Error::new(
            arg.span,
            "invalid duration: expected a whole number followed by `ms`, `s`, `m` or `h`, like \
             \"250ms\" or \"30s\"",
        )),
    }
}

/// `key = "a::b"` as a path, refused on the literal if it is not one.
fn path(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Arg<syn::Path>> {
    let arg = string(meta, example)?;
    match arg.value.parse::<syn::Path>() {
        Ok(path) => Ok(arg.with(path)),
        Err(_) => Err(syn::Error::new(
            arg.span,
            "expected a path, like \"::lockmacro_runtime\"",
        )),
    }
}

/// "250ms", "30s", "5m", "1h" to milliseconds; `None` if malformed or out of range.
fn duration_millis(text: &str) -> Option<u64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn durations() {
        assert_eq!(duration_millis("250ms"), Some(250));
        assert_eq!(duration_millis("2s"), Some(2_000));
        assert_eq!(duration_millis("1m"), Some(60_000));
        assert_eq!(duration_millis("1h"), Some(3_600_000));
        for bad in [
            "",
            "ms",
            "1",
            "1.5s",
            "-1s",
            " 1s",
            "1 s",
            "1d",
            "99999999999999999999s",
        ] {
            assert_eq!(duration_millis(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lists_words() {
        assert_eq!(one_of(&[("a", ())]), "\"a\"");
        assert_eq!(one_of(&[("a", ()), ("b", ())]), "\"a\" or \"b\"");
        assert_eq!(
            one_of(&[("a", ()), ("b", ()), ("c", ())]),
            "\"a\", \"b\" or \"c\""
        );
    }

    #[test]
    fn parses_every_key() {
        let args = parse(quote!(
            name = "n",
            timeout = "1s",
            dir = "/d",
            path = "/p.lock",
            scope = "system",
            cleanup,
            shared,
            slots = 3,
            on_conflict = "exit",
            exit_code = 3,
            notice = false,
            backend = "postgres",
            key = -7,
            lease = "2s",
            on_lost = "cancel",
            crate = "::x"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let name = args.name.map(|n| n.value);
        assert!(matches!(name, Some(Expr::Lit(_))));
        assert_eq!(
            args.path.map(|p| p.value.value()).as_deref(),
            Some("/p.lock")
        );
        assert_eq!(args.scope.map(|s| s.value), Some(Scope::System));
        assert_eq!(args.slots.map(|s| s.value.get()), Some(3));
        assert_eq!(args.timeout.map(|t| t.value), Some(1_000));
        assert_eq!(args.dir.map(|d| d.value.value()).as_deref(), Some("/d"));
        assert_eq!(args.on_conflict.map(|p| p.value), Some(OnConflict::Exit));
        assert_eq!(args.exit_code.map(|c| c.value), Some(3));
        assert_eq!(args.notice.map(|n| n.value), Some(false));
        assert_eq!(args.backend.map(|b| b.value), Some(BackendKind::Postgres));
        assert_eq!(args.key.map(|k| k.value), Some(-7));
        assert_eq!(args.lease.map(|l| l.value), Some(2_000));
        assert_eq!(args.on_lost.map(|l| l.value), Some(OnLost::Cancel));
        assert!(args.cleanup.is_some() && args.shared.is_some() && args.krate.is_some());
        assert!(args.wait.is_none());
    }

    #[test]
    fn name_takes_any_expression() {
        for tokens in [
            quote!(name = JOB_NAME),
            quote!(name = config::JOB),
            quote!(name = format!("tenant-{id}"), wait),
            quote!(name = &*tenant),
        ] {
            let args = parse(tokens).unwrap_or_else(|e| panic!("{e}"));
            assert!(args.name.is_some());
        }
    }

    #[test]
    fn rejects_mistakes() {
        for (tokens, message) in [
            (quote!(nmae = "x"), "unknown argument `nmae`"),
            (quote!(name = "a", name = "b"), "duplicate `name`"),
            (
                quote!(backend = "file", backend = "file"),
                "duplicate `backend`",
            ),
            (quote!(name = 1), "expected a string literal"),
            (quote!(timeout = "soon"), "invalid duration"),
            (quote!(on_conflict = "retry"), "unknown `on_conflict`"),
            (
                quote!(backend = "redis"),
                "expected \"file\" or \"postgres\"",
            ),
            (quote!(exit_code = 256), "between 0 and 255"),
            (quote!(exit_code = "3"), "expected an integer"),
            (quote!(key = 9223372036854775808), "fit in an `i64`"),
            (quote!(wait = true), "takes no value"),
            (quote!(notice = "no"), "expected `true` or `false`"),
            (quote!(crate = "a b"), "expected a path"),
            (quote!(on_conflict = exit), "write `on_conflict = \"exit\"`"),
            (quote!(on_conflict = later), "(a string, in quotes)"),
            (quote!(scope = system), "write `scope = \"system\"`"),
            (quote!(scope = "host"), "expected \"user\" or \"system\""),
            (quote!(slots = 0), "at least 1"),
            (quote!(slots = "2"), "expected an integer"),
            (quote!(dir = LOCK_DIR), "expected a string literal"),
            (quote!("x"), "write `name = \"x\"`"),
            (quote!(wait, "x"), "write `name = \"x\"`"),
            (quote!(5), "arguments are `key = value`"),
            (quote!(name = 5), "expected a string literal"),
        ] {
            let err = parse(tokens)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
    }
}
