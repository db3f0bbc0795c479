//! Parsing and checking the attribute's arguments.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::{Lit, LitInt, LitStr};

const KEYS: &str = "`name`, `wait`, `timeout`, `dir`, `cleanup`, `shared`, `on_conflict`, \
                    `exit_code`, `notice`, `backend`, `key`, `lease`, `on_lost`, `crate`";

/// What happens when the lock is not obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    Error,
    Exit,
    Panic,
}

/// The arguments as written, each with the span of its key for error reporting.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) wait: Option<Span>,
    pub(crate) timeout: Option<(Span, u64)>,
    pub(crate) dir: Option<LitStr>,
    pub(crate) cleanup: Option<Span>,
    pub(crate) shared: Option<Span>,
    pub(crate) on_conflict: Option<(LitStr, Policy)>,
    pub(crate) exit_code: Option<(Span, u8)>,
    pub(crate) notice: Option<(Span, bool)>,
    /// `backend = "postgres"` (`"file"` is the default and leaves this `None`).
    pub(crate) postgres: Option<Span>,
    pub(crate) key: Option<(Span, i64)>,
    pub(crate) lease: Option<(Span, u64)>,
    /// `on_lost = "cancel"` (true) or `"exit"`, with the span of the key.
    pub(crate) on_lost: Option<(Span, LitStr, bool)>,
    pub(crate) krate: Option<syn::Path>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| args.parse_one(&meta));
    syn::parse::Parser::parse2(parser, tokens)?;
    if let (Some(_), Some((span, _))) = (args.wait, args.timeout) {
        return Err(syn::Error::new(
            span,
            "`wait` and `timeout` cannot be combined: `wait` waits forever, `timeout` bounds the \
             wait; keep one",
        ));
    }
    Ok(args)
}

impl Args {
    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let span = key_span(meta);
        match key.as_str() {
            "name" => {
                let lit = string(meta, "name = \"nightly-backup\"")?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the lock name must not be empty",
                    ));
                }
                set(meta, &mut self.name, lit)
            }
            "wait" => set(meta, &mut self.wait, flag(meta)?),
            "cleanup" => set(meta, &mut self.cleanup, flag(meta)?),
            "shared" => set(meta, &mut self.shared, flag(meta)?),
            "timeout" => {
                let millis = duration(meta, "timeout = \"250ms\"")?;
                set(meta, &mut self.timeout, (span, millis))
            }
            "lease" => {
                let millis = duration(meta, "lease = \"10s\"")?;
                set(meta, &mut self.lease, (span, millis.max(1)))
            }
            "backend" => {
                let lit = string(meta, "backend = \"postgres\"")?;
                match lit.value().as_str() {
                    "postgres" => set(meta, &mut self.postgres, span),
                    "file" => Ok(()),
                    other => Err(syn::Error::new(
                        lit.span(),
                        format!("unknown backend \"{other}\": expected \"file\" or \"postgres\""),
                    )),
                }
            }
            "key" => {
                let lit: LitInt = match meta.value()?.parse::<Lit>()? {
                    Lit::Int(lit) => lit,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "expected an integer advisory-lock key, like `key = 42`",
                        ))
                    }
                };
                let key = lit.base10_parse::<i64>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`key` must fit in an `i64` (a PostgreSQL bigint)",
                    )
                })?;
                set(meta, &mut self.key, (span, key))
            }
            "on_lost" => {
                let lit = string(meta, "on_lost = \"cancel\"")?;
                let cancel = match lit.value().as_str() {
                    "cancel" => true,
                    "exit" => false,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "unknown `on_lost` policy \"{other}\": expected \"exit\" or \
                                 \"cancel\""
                            ),
                        ))
                    }
                };
                set(meta, &mut self.on_lost, (span, lit, cancel))
            }
            "dir" => {
                let lit = string(meta, "dir = \"/run/lock\"")?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the lock directory must not be empty",
                    ));
                }
                set(meta, &mut self.dir, lit)
            }
            "on_conflict" => {
                let lit = string(meta, "on_conflict = \"exit\"")?;
                let policy = match lit.value().as_str() {
                    "error" => Policy::Error,
                    "exit" => Policy::Exit,
                    "panic" => Policy::Panic,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "unknown `on_conflict` policy \"{other}\": expected \"error\", \
                                 \"exit\" or \"panic\""
                            ),
                        ))
                    }
                };
                set(meta, &mut self.on_conflict, (lit, policy))
            }
            "exit_code" => {
                let lit: LitInt = match meta.value()?.parse::<Lit>()? {
                    Lit::Int(lit) => lit,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "expected an integer, like `exit_code = 3`",
                        ))
                    }
                };
                let code = lit.base10_parse::<u8>().map_err(|_| {
                    syn::Error::new(lit.span(), "`exit_code` must be between 0 and 255")
                })?;
                set(meta, &mut self.exit_code, (span, code))
            }
            "notice" => {
                let on = match meta.value()?.parse::<Lit>()? {
                    Lit::Bool(lit) => lit.value,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "expected `true` or `false`, like `notice = false`",
                        ))
                    }
                };
                set(meta, &mut self.notice, (span, on))
            }
            "crate" => {
                let lit = string(meta, "crate = \"my_reexport::lockmacro_runtime\"")?;
                let path = lit.parse::<syn::Path>().map_err(|_| {
                    syn::Error::new(lit.span(), "expected a path, like \"::lockmacro_runtime\"")
                })?;
                set(meta, &mut self.krate, path)
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

/// A bare key like `wait`; `wait = true` or `wait(..)` is refused on the key.
fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<Span> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        Ok(key_span(meta))
    } else {
        Err(meta.error(format!(
            "`{}` takes no value: write it alone, like `#[exclusive({0})]`",
            path_text(&meta.path)
        )))
    }
}

/// `key = "string"`; any other literal is refused on the literal.
fn string(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    match meta.value()?.parse::<Lit>()? {
        Lit::Str(lit) => Ok(lit),
        other => Err(syn::Error::new(
            other.span(),
            format!("expected a string literal, like `{example}`"),
        )),
    }
}

/// `key = "250ms"`, in milliseconds; a malformed duration is refused on the literal.
fn duration(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<u64> {
    let lit = string(meta, example)?;
    duration_millis(&lit.value()).ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            "invalid duration: expected a whole number followed by `ms`, `s`, `m` or `h`, like \
             \"250ms\" or \"30s\"",
        )
    })
}

/// "250ms", "30s", "5m", "1h" to milliseconds; `None` if malformed or out of range.
pub(crate) fn duration_millis(text: &str) -> Option<u64> {
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
    fn parses_every_key() {
        let args = parse(quote!(
            name = "n",
            timeout = "1s",
            dir = "/d",
            cleanup,
            shared,
            on_conflict = "exit",
            exit_code = 3,
            notice = false,
            crate = "::x"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("n"));
        assert_eq!(args.timeout.map(|t| t.1), Some(1_000));
        assert_eq!(args.exit_code.map(|c| c.1), Some(3));
        assert_eq!(args.notice.map(|n| n.1), Some(false));
        assert!(args.cleanup.is_some() && args.shared.is_some() && args.krate.is_some());
    }

    #[test]
    fn rejects_mistakes() {
        for (tokens, message) in [
            (quote!(nmae = "x"), "unknown argument `nmae`"),
            (quote!(name = "a", name = "b"), "duplicate `name`"),
            (quote!(name = 1), "expected a string literal"),
            (quote!(name = ""), "must not be empty"),
            (quote!(timeout = "soon"), "invalid duration"),
            (quote!(wait, timeout = "1s"), "cannot be combined"),
            (quote!(on_conflict = "retry"), "unknown `on_conflict`"),
            (quote!(exit_code = 256), "between 0 and 255"),
            (quote!(wait = true), "takes no value"),
            (quote!(notice = "no"), "expected `true` or `false`"),
        ] {
            let err = parse(tokens)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
    }
}
