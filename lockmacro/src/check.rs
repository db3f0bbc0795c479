//! Step 2 of 3, meaning: the parsed [`Args`] and the function's [`FnInfo`] to a [`Config`], with
//! the defaults applied.
//!
//! Every compile error about what the arguments mean, together or for this function, is raised
//! here. The result holds only what the expansion needs, in types that leave out the
//! combinations refused here (an exit code without the exit policy, `dir` on a PostgreSQL lock).

use std::num::NonZeroU32;

use proc_macro2::Span;
use syn::{Expr, LitStr};

pub(crate) use crate::args::OnLost;
use crate::args::{Arg, Args, BackendKind, OnConflict, Scope};
use crate::item::{FnInfo, Returns};

/// Everything the expansion needs besides the function itself.
pub(crate) struct Config {
    /// Where the runtime crate is: `crate = "..."`, else `::lockmacro_runtime`.
    pub(crate) krate: syn::Path,
    pub(crate) lock: Lock,
    pub(crate) wait: Wait,
    pub(crate) policy: Policy,
}

/// The lock the function takes: the runtime's `Lock::new(name)` (or `Lock::at(path)`) and its
/// builder calls.
pub(crate) struct Lock {
    pub(crate) backend: Backend,
    /// `shared`: a reader lock.
    pub(crate) shared: bool,
    pub(crate) on_lost: OnLost,
    /// Announce a long wait on stderr; only ever true when the function waits.
    pub(crate) notice: bool,
}

impl Lock {
    /// The name, unless the lock is a file given by its path.
    pub(crate) fn name(&self) -> Option<&Name> {
        match &self.backend {
            Backend::File(FileOptions {
                file: LockFile::Named { name, .. },
                ..
            })
            | Backend::Postgres(PostgresOptions { name, .. }) => Some(name),
            Backend::File(FileOptions {
                file: LockFile::At(_),
                ..
            }) => None,
        }
    }

    /// Whether the lock is built at each call (its name depends on the call), not once per
    /// process.
    pub(crate) fn per_call(&self) -> bool {
        matches!(self.name(), Some(Name::PerCall(_)))
    }
}

/// The lock's name.
pub(crate) enum Name {
    /// The crate name and the source file, so all unnamed locks of one file are one lock.
    PerFile,
    /// `name = "..."`, not empty.
    Literal(LitStr),
    /// `name = JOB_NAME`: a path to a `const` or `static` (anything an item can see), evaluated
    /// once per process, like a literal.
    Constant(Expr),
    /// `name = format!("tenant-{id}")`: any other expression, or a path starting with an
    /// argument, a generic parameter or `Self`; evaluated at each call.
    PerCall(Expr),
}

/// Where the lock lives, with the options of that backend.
pub(crate) enum Backend {
    File(FileOptions),
    Postgres(PostgresOptions),
}

/// `backend = "file"`, the default.
pub(crate) struct FileOptions {
    pub(crate) file: LockFile,
    /// `cleanup`: remove the lock file on release.
    pub(crate) cleanup: bool,
    /// `slots = N`: up to N holders at once (never with `shared`).
    pub(crate) slots: Option<NonZeroU32>,
}

/// Which file is locked.
pub(crate) enum LockFile {
    /// `Lock::new(name)`: a file for the name in a directory.
    Named { name: Name, dir: Dir },
    /// `path = "..."`, not empty: `Lock::at(path)`, exactly this file.
    At(LitStr),
}

/// The directory of a named lock file.
pub(crate) enum Dir {
    /// The runtime's default: `LOCKMACRO_DIR`, else the per-user directory (`scope = "user"`).
    Default,
    /// `scope = "system"`: the runtime's system-wide directory (`Lock::system`).
    System,
    /// `dir = "..."`, not empty.
    Given(LitStr),
}

/// `backend = "postgres"`; the server URL comes from the environment at run time.
pub(crate) struct PostgresOptions {
    pub(crate) name: Name,
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
    /// `on_conflict = "skip"`: when the lock is taken (or the timeout ran out), return at once
    /// without running the body, as [`Skipped`] says; any other failure as that says too.
    Skip(Skipped),
}

/// How a skipped call ends, by the function's return type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// `main`: the process exits 0 without a word; another failure: the `"exit"` policy, 1.
    Exit,
    /// `()`: `return;`; another failure panics.
    Unit,
    /// `Option<T>`: `return None;`; another failure panics.
    None,
}

pub(crate) fn check(args: Args, info: &FnInfo) -> syn::Result<Config> {
    let Args {
        name,
        wait,
        timeout,
        dir,
        path,
        scope,
        cleanup,
        shared,
        slots,
        on_conflict,
        exit_code,
        notice,
        backend,
        key,
        lease,
        on_lost,
        krate,
    } = args;
    let name_key = name.as_ref().map(|arg| arg.key);
    let name = check_name(name, info)?;
    let wait_key = wait.as_ref().map(|arg| arg.key);
    let wait = check_wait(wait, timeout)?;
    let policy = check_policy(on_conflict, exit_code, wait, wait_key, info)?;
    let on_lost = check_on_lost(on_lost, info)?;
    let backend = check_backend(Place {
        backend,
        name,
        name_key,
        dir,
        path,
        scope,
        cleanup,
        slots,
        shared: shared.as_ref().map(|arg| arg.key),
        key,
        lease,
    })?;
    let notice = check_notice(notice, wait, policy, info)?;
    Ok(Config {
        krate: krate.map_or_else(runtime_crate, |arg| arg.value),
        lock: Lock {
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

/// A literal, a constant (built once, like a literal), or an expression evaluated at each call.
fn check_name(name: Option<Arg<Expr>>, info: &FnInfo) -> syn::Result<Name> {
    let Some(arg) = name else {
        return Ok(Name::PerFile);
    };
    let mut inner = &arg.value;
    while let Expr::Group(group) = inner {
        inner = &group.expr;
    }
    match inner {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => {
            if lit.value().is_empty() {
                return error(arg.span, "the lock name must not be empty");
            }
            Ok(Name::Literal(lit.clone()))
        }
        Expr::Path(path) if path.qself.is_none() && !uses_the_call(&path.path, info) => {
            Ok(Name::Constant(arg.value))
        }
        _ => Ok(Name::PerCall(arg.value)),
    }
}

/// Whether a path names something only the call has (an argument, a generic parameter, `self`
/// or `Self`), which the once-per-process `static` cannot see.
fn uses_the_call(path: &syn::Path, info: &FnInfo) -> bool {
    path.segments.first().is_some_and(|first| {
        first.ident == "Self"
            || (path.leading_colon.is_none() && info.call_names.contains(&first.ident))
    })
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
    wait_key: Option<Span>,
    info: &FnInfo,
) -> syn::Result<Policy> {
    let written = on_conflict.as_ref().map_or(info.fn_span, |arg| arg.span);
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
        (OnConflict::Skip, code) => check_skip(written, code, wait_key, info),
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

/// `on_conflict = "skip"` (written at `skip`): only where a return without running the body can
/// be written, and only when the function may give up waiting.
fn check_skip(
    skip: Span,
    exit_code: Option<Arg<u8>>,
    wait_key: Option<Span>,
    info: &FnInfo,
) -> syn::Result<Policy> {
    let skipped = check_skip_target(skip, info)?;
    if let Some(wait) = wait_key {
        return error(
            wait,
            "`wait` never gives up, so `on_conflict = \"skip\"` would never skip: remove `wait` \
             to skip at once, or bound the wait with `timeout = \"...\"` to skip after it",
        );
    }
    if let Some(code) = exit_code {
        return error(
            code.key,
            "`exit_code` only applies with `on_conflict = \"exit\"`: a skipped `main` exits with \
             status 0",
        );
    }
    Ok(Policy::Skip(skipped))
}

/// How this function can end a skipped call: refused (on `span`) when its return type cannot.
fn check_skip_target(span: Span, info: &FnInfo) -> syn::Result<Skipped> {
    match info.returns {
        _ if info.is_main => Ok(Skipped::Exit),
        Returns::Unit => Ok(Skipped::Unit),
        Returns::Option => Ok(Skipped::None),
        Returns::Other => error(
            span,
            "`on_conflict = \"skip\"` needs a function that can return without running its \
             body: one returning `()` (skipped: returns at once) or `Option<T>` (skipped: \
             `None`), or `main` (skipped: exits with status 0); for a `Result`, use \
             `on_conflict = \"error\"` and match `Error::is_contended()`",
        ),
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

/// Where the lock is, as written: the arguments `check_backend` weighs together.
struct Place {
    backend: Option<Arg<BackendKind>>,
    name: Name,
    name_key: Option<Span>,
    dir: Option<Arg<LitStr>>,
    path: Option<Arg<LitStr>>,
    scope: Option<Arg<Scope>>,
    cleanup: Option<Arg<()>>,
    slots: Option<Arg<NonZeroU32>>,
    /// The `shared` key, if given.
    shared: Option<Span>,
    key: Option<Arg<i64>>,
    lease: Option<Arg<u64>>,
}

/// The backend, refusing the other backend's keys and the file keys that exclude each other.
fn check_backend(place: Place) -> syn::Result<Backend> {
    let Place {
        backend,
        name,
        name_key,
        dir,
        path,
        scope,
        cleanup,
        slots,
        shared,
        key,
        lease,
    } = place;
    match backend.map_or(BackendKind::File, |arg| arg.value) {
        BackendKind::File => {
            let postgres_only = [("key", key.map(|k| k.key)), ("lease", lease.map(|l| l.key))];
            if let Some((what, span)) = first_given(postgres_only) {
                return error(
                    span,
                    format!("`{what}` applies to `backend = \"postgres\"` locks only"),
                );
            }
            if let (Some(slots), Some(_)) = (&slots, shared) {
                return error(
                    slots.key,
                    "`slots` and `shared` cannot be combined: `slots = N` lets N holders run at \
                     once, `shared` lets any number of readers run together; keep one",
                );
            }
            let file = match path {
                Some(path) => {
                    let taken = [
                        ("name", name_key, "its name is the file's"),
                        ("dir", dir.map(|d| d.key), "it already says which directory"),
                        (
                            "scope",
                            scope.map(|s| s.key),
                            "it already says where the file is",
                        ),
                    ];
                    if let Some((what, span, why)) = taken
                        .into_iter()
                        .find_map(|(what, span, why)| span.map(|span| (what, span, why)))
                    {
                        return error(
                            span,
                            format!(
                                "`{what}` and `path` cannot be combined: `path` is the lock file \
                                 itself, and {why}; keep one"
                            ),
                        );
                    }
                    if path.value.value().is_empty() {
                        return error(path.span, "the lock file path must not be empty");
                    }
                    LockFile::At(path.value)
                }
                None => {
                    let dir = match (dir, scope) {
                        (Some(_), Some(scope)) => {
                            return error(
                                scope.key,
                                "`scope` and `dir` cannot be combined: `dir` is the directory \
                                 itself; keep one",
                            )
                        }
                        (Some(arg), None) if arg.value.value().is_empty() => {
                            return error(arg.span, "the lock directory must not be empty")
                        }
                        (Some(arg), None) => Dir::Given(arg.value),
                        (None, Some(scope)) if scope.value == Scope::System => Dir::System,
                        (None, _) => Dir::Default,
                    };
                    LockFile::Named { name, dir }
                }
            };
            Ok(Backend::File(FileOptions {
                file,
                cleanup: cleanup.is_some(),
                slots: slots.map(|arg| arg.value),
            }))
        }
        BackendKind::Postgres => {
            let file_only = [
                ("dir", dir.map(|d| d.span)),
                ("path", path.map(|p| p.key)),
                ("scope", scope.map(|s| s.key)),
                ("cleanup", cleanup.map(|c| c.key)),
                ("slots", slots.map(|s| s.key)),
            ];
            if let Some((what, span)) = first_given(file_only) {
                return error(
                    span,
                    format!("`{what}` applies to lock files, not to `backend = \"postgres\"`"),
                );
            }
            Ok(Backend::Postgres(PostgresOptions {
                name,
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

/// `notice`: only with a wait; by default on for a waiting `main`, unless it skips (a skipped
/// run prints nothing, and neither does its wait).
fn check_notice(
    notice: Option<Arg<bool>>,
    wait: Wait,
    policy: Policy,
    info: &FnInfo,
) -> syn::Result<bool> {
    let waits = wait != Wait::Now;
    match notice {
        Some(arg) if arg.value && !waits => error(
            arg.key,
            "`notice` announces long waits: add `wait` or `timeout`, or remove it",
        ),
        Some(arg) => Ok(arg.value),
        None => Ok(info.is_main && waits && !matches!(policy, Policy::Skip(_))),
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
        assert!(main.lock.notice && matches!(main.lock.name(), Some(Name::PerFile)));
        assert!(matches!(
            main.lock.backend,
            Backend::File(FileOptions {
                file: LockFile::Named {
                    dir: Dir::Default,
                    ..
                },
                slots: None,
                ..
            })
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
    fn skip_by_return_type() {
        for (args, item, skipped, notice) in [
            (
                quote!(on_conflict = "skip"),
                quote!(
                    fn main() -> std::process::ExitCode {}
                ),
                Skipped::Exit,
                false,
            ),
            (
                quote!(on_conflict = "skip", timeout = "1s"),
                quote!(
                    fn main() {}
                ),
                Skipped::Exit,
                false,
            ),
            (
                quote!(on_conflict = "skip"),
                quote!(
                    fn f() -> () {}
                ),
                Skipped::Unit,
                false,
            ),
            (
                quote!(on_conflict = "skip", timeout = "1s"),
                quote!(
                    async fn f() -> Option<u8> {}
                ),
                Skipped::None,
                false,
            ),
            (
                quote!(on_conflict = "skip", timeout = "1s", notice = true),
                quote!(
                    fn main() {}
                ),
                Skipped::Exit,
                true,
            ),
        ] {
            let config = config(args, item).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config.policy, Policy::Skip(skipped));
            assert_eq!(config.lock.notice, notice);
        }
    }

    #[test]
    fn names_once_or_per_call() {
        let item = quote!(
            fn f<T: Named>(id: u32, (a, b): (u8, u8), Tenant { key, .. }: Tenant) {}
        );
        for (args, per_call) in [
            (quote!(name = "x"), false),
            (quote!(name = JOB_NAME), false),
            (quote!(name = config::JOB_NAME), false),
            (quote!(name = ::config::id), false),
            (quote!(name = id), true),
            (quote!(name = b), true),
            (quote!(name = key), true),
            (quote!(name = T::NAME), true),
            (quote!(name = Self::NAME), true),
            (quote!(name = format!("tenant-{id}")), true),
            (quote!(name = JOBS[0]), true),
        ] {
            let shown = args.to_string();
            let mut args = args;
            args.extend(quote!(, wait));
            let config = config(args, item.clone()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config.lock.per_call(), per_call, "{shown}");
        }
    }

    #[test]
    fn places() {
        let unit = quote!(
            fn f() {}
        );
        let at = config(quote!(path = "/a.lock", cleanup, wait), unit.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(at.lock.name().is_none());
        assert!(matches!(
            at.lock.backend,
            Backend::File(FileOptions {
                file: LockFile::At(_),
                cleanup: true,
                ..
            })
        ));
        let system = config(quote!(scope = "system", slots = 2, wait), unit.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            system.lock.backend,
            Backend::File(FileOptions {
                file: LockFile::Named {
                    dir: Dir::System,
                    ..
                },
                slots: Some(n),
                ..
            }) if n.get() == 2
        ));
        let user = config(quote!(scope = "user", wait), unit).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            user.lock.backend,
            Backend::File(FileOptions {
                file: LockFile::Named {
                    dir: Dir::Default,
                    ..
                },
                ..
            })
        ));
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
                lease_millis: Some(1),
                ..
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
            (
                quote!(on_conflict = "skip"),
                &quote!(
                    fn f() -> u32 {}
                ),
                "returning `()`",
            ),
            (
                quote!(on_conflict = "skip"),
                &quote!(
                    fn f() -> Result<(), E> {}
                ),
                "for a `Result`, use",
            ),
            (quote!(on_conflict = "skip", wait), &unit, "never gives up"),
            (
                quote!(on_conflict = "skip", exit_code = 3),
                &main,
                "exits with status 0",
            ),
            (
                quote!(path = "/a", name = "b"),
                &main,
                "`name` and `path` cannot",
            ),
            (quote!(path = "/a", dir = "/b"), &main, "`dir` and `path`"),
            (
                quote!(scope = "user", path = "/a"),
                &main,
                "`scope` and `path`",
            ),
            (quote!(path = ""), &main, "must not be empty"),
            (
                quote!(scope = "system", dir = "/b"),
                &main,
                "`scope` and `dir`",
            ),
            (quote!(slots = 2, shared), &main, "`slots` and `shared`"),
            (
                quote!(backend = "postgres", path = "/a"),
                &main,
                "`path` applies to lock files",
            ),
            (
                quote!(backend = "postgres", scope = "system"),
                &main,
                "`scope` applies to lock files",
            ),
            (
                quote!(backend = "postgres", slots = 2),
                &main,
                "`slots` applies to lock files",
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
