//! Step 2 of 3, meaning: the parsed [`Args`] and the function's [`FnInfo`] to a [`Config`], with
//! the defaults applied.
//!
//! Every compile error about what the arguments mean, together or for this function, is raised
//! here. The result holds only what the expansion needs, in types that leave out the
//! combinations refused here (an exit code without the exit policy, `dir` on a PostgreSQL lock).

use proc_macro2::Span;
use syn::LitStr;

pub(crate) use crate::args::OnLost;
use crate::args::{Arg, Args, BackendKind, OnConflict};
use crate::item::FnInfo;

/// Everything the expansion needs besides the function itself.
pub(crate) struct Config {
    /// Where the runtime crate is: `crate = "..."`, else `::lockmacro_runtime`.
    pub(crate) krate: syn::Path,
    pub(crate) lock: Lock,
    pub(crate) wait: Wait,
    pub(crate) policy: Policy,
}

/// The lock the function takes: the runtime's `Lock::new(name)` and its builder calls.
pub(crate) struct Lock {
    pub(crate) name: Name,
    pub(crate) backend: Backend,
    /// `shared`: a reader lock.
    pub(crate) shared: bool,
    pub(crate) on_lost: OnLost,
    /// Announce a long wait on stderr; only ever true when the function waits.
    pub(crate) notice: bool,
}

/// The lock's name.
pub(crate) enum Name {
    /// The crate name and the source file, so all unnamed locks of one file are one lock.
    PerFile,
    /// `name = "..."`, not empty.
    Literal(LitStr),
}

/// Where the lock lives, with the options of that backend.
pub(crate) enum Backend {
    File(FileOptions),
    Postgres(PostgresOptions),
}

/// `backend = "file"`, the default.
pub(crate) struct FileOptions {
    /// `dir = "..."`, not empty; else the runtime's default directory.
    pub(crate) dir: Option<LitStr>,
    /// `cleanup`: remove the lock file on release.
    pub(crate) cleanup: bool,
}

/// `backend = "postgres"`; the server URL comes from the environment at run time.
pub(crate) struct PostgresOptions {
    /// `key = N`, else the key derived from the name.
    pub(crate) key: Option<i64>,
    /// `lease = "..."` in milliseconds (at least 1), else the runtime's default.
    pub(crate) lease_millis: Option<u64>,
}

/// How long to wait for the lock: the runtime's `Deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all (no `wait`, no `timeout`).
    Now,
    /// `wait`: as long as it takes.
    Never,
    /// `timeout = "..."`.
    After { millis: u64 },
}

/// What happens when the lock is not obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Return `Err(From::from(err))`.
    Error,
    /// Print the error and exit the process with `code`.
    Exit { code: u8 },
    /// Panic with the error.
    Panic,
}

pub(crate) fn check(args: Args, info: &FnInfo) -> syn::Result<Config> {
    let Args {
        name,
        wait,
        timeout,
        dir,
        cleanup,
        shared,
        on_conflict,
        exit_code,
        notice,
        backend,
        key,
        lease,
        on_lost,
        krate,
    } = args;
    let name = check_name(name)?;
    let wait = check_wait(wait, timeout)?;
    let policy = check_policy(on_conflict, exit_code, wait, info)?;
    let on_lost = check_on_lost(on_lost, info)?;
    let backend = check_backend(backend, dir, cleanup, key, lease)?;
    let notice = check_notice(notice, wait, info)?;
    Ok(Config {
        krate: krate.map_or_else(runtime_crate, |arg| arg.value),
        lock: Lock {
            name,
            backend,
            shared: shared.is_some(),
            on_lost,
            notice,
        },
        wait,
        policy,
    })
}

fn error<T>(span: Span, message: impl std::fmt::Display) -> syn::Result<T> {
    Err(syn::Error::new(span, message))
}

/// `::lockmacro_runtime`.
fn runtime_crate() -> syn::Path {
    let mut path = syn::Path::from(syn::Ident::new("lockmacro_runtime", Span::call_site()));
    path.leading_colon = Some(Default::default());
    path
}

fn check_name(name: Option<Arg<LitStr>>) -> syn::Result<Name> {
    match name {
        None => Ok(Name::PerFile),
        Some(arg) if arg.value.value().is_empty() => {
            error(arg.span, "the lock name must not be empty")
        }
        Some(arg) => Ok(Name::Literal(arg.value)),
    }
}

fn check_wait(wait: Option<Arg<()>>, timeout: Option<Arg<u64>>) -> syn::Result<Wait> {
    match (wait, timeout) {
        (Some(_), Some(timeout)) => error(
            timeout.key,
            "`wait` and `timeout` cannot be combined: `wait` waits forever, `timeout` bounds the \
             wait; keep one",
        ),
        (Some(_), None) => Ok(Wait::Never),
        (None, Some(timeout)) => Ok(Wait::After {
            millis: timeout.value,
        }),
        (None, None) => Ok(Wait::Now),
    }
}

/// The given policy, or the default for this function (`main` exits, a `Result` function
/// returns the error, a waiting function panics on an I/O failure), with its exit code.
fn check_policy(
    on_conflict: Option<Arg<OnConflict>>,
    exit_code: Option<Arg<u8>>,
    wait: Wait,
    info: &FnInfo,
) -> syn::Result<Policy> {
    let chosen = match on_conflict {
        Some(arg) if arg.value == OnConflict::Error && !info.may_return_result => {
            return error(
                arg.span,
                "`on_conflict = \"error\"` needs a function that returns `Result`, so the error \
                 can be returned; use \"exit\" or \"panic\" here",
            )
        }
        Some(arg) => arg.value,
        None if info.is_main => OnConflict::Exit,
        None if info.returns_result => OnConflict::Error,
        None if wait == Wait::Never => OnConflict::Panic,
        None => {
            let options = if wait == Wait::Now {
                "`wait`, or `on_conflict = \"exit\"` or `on_conflict = \"panic\"`"
            } else {
                "`on_conflict = \"exit\"` or `on_conflict = \"panic\"` for when the timeout runs \
                 out"
            };
            return error(
                info.fn_span,
                format!(
                    "`#[exclusive]` needs to know what to do when the lock is not obtained: this \
                     function does not return `Result`, so add {options}"
                ),
            );
        }
    };
    match (chosen, exit_code) {
        (OnConflict::Exit, code) => Ok(Policy::Exit {
            code: code.map_or(1, |arg| arg.value),
        }),
        (_, Some(code)) => error(
            code.key,
            "`exit_code` only applies with `on_conflict = \"exit\"` (the default for `main`)",
        ),
        (OnConflict::Error, None) => Ok(Policy::Error),
        (OnConflict::Panic, None) => Ok(Policy::Panic),
    }
}

fn check_on_lost(on_lost: Option<Arg<OnLost>>, info: &FnInfo) -> syn::Result<OnLost> {
    match on_lost {
        Some(arg) if arg.value == OnLost::Cancel && !(info.is_async && info.may_return_result) => {
            error(
                arg.span,
                "`on_lost = \"cancel\"` needs an `async fn` that returns `Result`: the body's \
                 future is dropped and the function returns the `Error::Lost`",
            )
        }
        Some(arg) => Ok(arg.value),
        None => Ok(OnLost::Exit),
    }
}

/// The backend, refusing the other backend's keys.
fn check_backend(
    backend: Option<Arg<BackendKind>>,
    dir: Option<Arg<LitStr>>,
    cleanup: Option<Arg<()>>,
    key: Option<Arg<i64>>,
    lease: Option<Arg<u64>>,
) -> syn::Result<Backend> {
    match backend.map_or(BackendKind::File, |arg| arg.value) {
        BackendKind::File => {
            let postgres_only = [("key", key.map(|k| k.key)), ("lease", lease.map(|l| l.key))];
            if let Some((what, span)) = first_given(postgres_only) {
                return error(
                    span,
                    format!("`{what}` applies to `backend = \"postgres\"` locks only"),
                );
            }
            let dir = match dir {
                Some(arg) if arg.value.value().is_empty() => {
                    return error(arg.span, "the lock directory must not be empty")
                }
                dir => dir.map(|arg| arg.value),
            };
            Ok(Backend::File(FileOptions {
                dir,
                cleanup: cleanup.is_some(),
            }))
        }
        BackendKind::Postgres => {
            let file_only = [
                ("dir", dir.map(|d| d.span)),
                ("cleanup", cleanup.map(|c| c.key)),
            ];
            if let Some((what, span)) = first_given(file_only) {
                return error(
                    span,
                    format!("`{what}` applies to lock files, not to `backend = \"postgres\"`"),
                );
            }
            Ok(Backend::Postgres(PostgresOptions {
                key: key.map(|arg| arg.value),
                lease_millis: lease.map(|arg| arg.value.max(1)),
            }))
        }
    }
}

/// The first of these keys that was given, with its span.
fn first_given<const N: usize>(keys: [(&str, Option<Span>); N]) -> Option<(&str, Span)> {
    keys.into_iter()
        .find_map(|(what, span)| span.map(|span| (what, span)))
}

/// `notice`: only with a wait; by default on for a waiting `main`.
fn check_notice(notice: Option<Arg<bool>>, wait: Wait, info: &FnInfo) -> syn::Result<bool> {
    let waits = wait != Wait::Now;
    match notice {
        Some(arg) if arg.value && !waits => error(
            arg.key,
            "`notice` announces long waits: add `wait` or `timeout`, or remove it",
        ),
        Some(arg) => Ok(arg.value),
        None => Ok(info.is_main && waits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn config(args: TokenStream, item: TokenStream) -> syn::Result<Config> {
        let (_, info) = crate::item::parse(item)?;
        check(crate::args::parse(args)?, &info)
    }

    #[test]
    fn applies_defaults() {
        let main = config(
            quote!(wait),
            quote!(
                fn main() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(main.wait, Wait::Never);
        assert_eq!(main.policy, Policy::Exit { code: 1 });
        assert!(main.lock.notice && matches!(main.lock.name, Name::PerFile));
        assert!(matches!(
            main.lock.backend,
            Backend::File(FileOptions { dir: None, .. })
        ));
        let result = config(
            quote!(timeout = "2s"),
            quote!(
                fn f() -> io::Result<()> {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(result.wait, Wait::After { millis: 2_000 });
        assert_eq!(result.policy, Policy::Error);
        assert!(!result.lock.notice);
        let waits = config(
            quote!(wait),
            quote!(
                fn f() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(waits.policy, Policy::Panic);
    }

    #[test]
    fn postgres_options() {
        let pg = config(
            quote!(backend = "postgres", key = 5, lease = "0s", wait),
            quote!(
                fn f() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            pg.lock.backend,
            Backend::Postgres(PostgresOptions {
                key: Some(5),
                lease_millis: Some(1)
            })
        ));
    }

    #[test]
    fn rejects_mistakes() {
        let main = quote!(
            fn main() {}
        );
        let unit = quote!(
            fn f() {}
        );
        for (args, item, message) in [
            (quote!(name = ""), &main, "must not be empty"),
            (quote!(dir = ""), &main, "must not be empty"),
            (quote!(wait, timeout = "1s"), &main, "cannot be combined"),
            (
                quote!(on_conflict = "error"),
                &unit,
                "needs a function that returns `Result`",
            ),
            (quote!(), &unit, "so add `wait`, or"),
            (
                quote!(timeout = "1s"),
                &unit,
                "for when the timeout runs out",
            ),
            (
                quote!(on_conflict = "panic", exit_code = 2),
                &main,
                "`exit_code` only",
            ),
            (quote!(on_lost = "cancel"), &main, "needs an `async fn`"),
            (
                quote!(key = 1),
                &main,
                "`key` applies to `backend = \"postgres\"`",
            ),
            (
                quote!(backend = "postgres", cleanup),
                &main,
                "`cleanup` applies to lock files",
            ),
            (
                quote!(notice = true),
                &main,
                "`notice` announces long waits",
            ),
        ] {
            let err = config(args, item.clone())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
    }
}
