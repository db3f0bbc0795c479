//! Writing the output: the user's function with the lock taken at the top of its body.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::{AttrStyle, ItemFn, ReturnType, Type};

use crate::args::{self, Args, BackendKind, OnConflict as Policy, OnLost};
use crate::item::{self, FnInfo};

/// Input: the attribute's arguments and the annotated item.
/// Output: the item with a lock acquisition inserted before its first statement (for `async fn`,
/// the body runs inside a scope future that keeps the lock on the call chain during each poll),
/// or, on any mistake, the untouched item plus the compile error.
pub(crate) fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    let checked = item::parse(item.clone()).and_then(|(f, info)| {
        let args = args::parse(args)?;
        let plan = Plan::new(args, &info)?;
        Ok(expand(f, &info, &plan))
    });
    match checked {
        Ok(tokens) => tokens,
        Err(err) => {
            // Keep the user's function so IDEs and later code keep working.
            let err = err.into_compile_error();
            quote!(#item #err)
        }
    }
}

/// The checked arguments, with defaults applied.
struct Plan {
    krate: TokenStream,
    name: TokenStream,
    builder: TokenStream,
    mode: TokenStream,
    policy: Policy,
    exit_code: i32,
    /// `on_lost = "cancel"`: the async body is dropped when the lock is lost.
    cancel_on_lost: bool,
    /// `backend = "postgres"`: the lock is built through a runtime macro that checks the
    /// runtime's feature.
    postgres: bool,
    /// Where a missing `From<Error>` for the user's error type is reported: the return type.
    ret_span: Span,
}

impl Plan {
    fn new(args: Args, info: &FnInfo) -> syn::Result<Plan> {
        if let Some(arg) = args
            .name
            .as_ref()
            .filter(|arg| arg.value.value().is_empty())
        {
            return Err(syn::Error::new(arg.span, "the lock name must not be empty"));
        }
        if let Some(arg) = args.dir.as_ref().filter(|arg| arg.value.value().is_empty()) {
            return Err(syn::Error::new(
                arg.span,
                "the lock directory must not be empty",
            ));
        }
        if let (Some(_), Some(timeout)) = (&args.wait, &args.timeout) {
            return Err(syn::Error::new(
                timeout.key,
                "`wait` and `timeout` cannot be combined: `wait` waits forever, `timeout` bounds \
                 the wait; keep one",
            ));
        }
        let krate = args.krate.as_ref().map_or_else(
            || quote!(::lockmacro_runtime),
            |p| p.value.to_token_stream(),
        );
        let policy = match &args.on_conflict {
            Some(arg) if arg.value == Policy::Error && !info.may_return_result => {
                return Err(syn::Error::new(
                    arg.span,
                    "`on_conflict = \"error\"` needs a function that returns `Result`, so the \
                     error can be returned; use \"exit\" or \"panic\" here",
                ))
            }
            Some(arg) => arg.value,
            None if info.is_main => Policy::Exit,
            None if info.returns_result => Policy::Error,
            None if args.wait.is_some() => Policy::Panic,
            None => {
                let options = if args.timeout.is_some() {
                    "`on_conflict = \"exit\"` or `on_conflict = \"panic\"` for when the timeout \
                     runs out"
                } else {
                    "`wait`, or `on_conflict = \"exit\"` or `on_conflict = \"panic\"`"
                };
                return Err(syn::Error::new(
                    info.fn_span,
                    format!(
                        "`#[exclusive]` needs to know what to do when the lock is not obtained: \
                         this function does not return `Result`, so add {options}"
                    ),
                ));
            }
        };
        if let Some(code) = &args.exit_code {
            if policy != Policy::Exit {
                return Err(syn::Error::new(
                    code.key,
                    "`exit_code` only applies with `on_conflict = \"exit\"` (the default for \
                     `main`)",
                ));
            }
        }
        let name = match &args.name {
            Some(arg) => arg.value.to_token_stream(),
            None => quote!(::core::concat!(
                ::core::env!("CARGO_CRATE_NAME"),
                ":",
                ::core::file!()
            )),
        };
        let mut builder = TokenStream::new();
        if let Some(dir) = &args.dir {
            let dir = &dir.value;
            builder.extend(quote!(.dir(#dir)));
        }
        if args.cleanup.is_some() {
            builder.extend(quote!(.cleanup()));
        }
        if args.shared.is_some() {
            builder.extend(quote!(.shared()));
        }
        let backend = backend(&args, info, &krate)?;
        builder.extend(backend.builder);
        let waits = args.wait.is_some() || args.timeout.is_some();
        match args.notice.as_ref().map(|arg| (arg.key, arg.value)) {
            Some((span, true)) if !waits => {
                return Err(syn::Error::new(
                    span,
                    "`notice` announces long waits: add `wait` or `timeout`, or remove it",
                ))
            }
            Some((_, true)) => builder.extend(quote!(.wait_notice(true))),
            None if info.is_main && waits => builder.extend(quote!(.wait_notice(true))),
            _ => {}
        }
        let mode = match (&args.wait, args.timeout.as_ref().map(|arg| arg.value)) {
            (Some(_), _) => quote!(#krate::__private::Deadline::Never),
            (None, Some(ms)) => quote!(
                #krate::__private::Deadline::after(::core::time::Duration::from_millis(#ms))
            ),
            (None, None) => quote!(#krate::__private::Deadline::Now),
        };
        Ok(Plan {
            krate,
            name,
            builder,
            mode,
            policy,
            exit_code: args.exit_code.map_or(1, |arg| i32::from(arg.value)),
            cancel_on_lost: backend.cancel_on_lost,
            postgres: backend.postgres,
            ret_span: info.ret_span,
        })
    }

    /// What to do with the `Error` bound to `err` when the lock is not obtained.
    fn on_failure(&self, err: &syn::Ident) -> TokenStream {
        let krate = &self.krate;
        match self.policy {
            Policy::Error => {
                // rustc reports a missing `From` on the argument: place it on the return type.
                let arg = syn::Ident::new(
                    &err.to_string(),
                    Span::mixed_site().located_at(self.ret_span),
                );
                let from = quote_spanned!(self.ret_span=> ::core::convert::From::from);
                quote!(return ::core::result::Result::Err(#from(#arg)))
            }
            Policy::Exit => {
                let code = self.exit_code;
                quote!(#krate::__private::exit(#err, #code))
            }
            Policy::Panic => quote!(#krate::__private::panic(#err)),
        }
    }
}

/// The builder calls and feature check for `backend = "postgres"` and its keys.
struct Backend {
    builder: TokenStream,
    postgres: bool,
    cancel_on_lost: bool,
}

fn backend(args: &Args, info: &FnInfo, krate: &TokenStream) -> syn::Result<Backend> {
    let mut backend = Backend {
        builder: TokenStream::new(),
        postgres: false,
        cancel_on_lost: false,
    };
    backend.cancel_on_lost = match &args.on_lost {
        Some(arg) if arg.value == OnLost::Cancel && !(info.is_async && info.may_return_result) => {
            return Err(syn::Error::new(
                arg.span,
                "`on_lost = \"cancel\"` needs an `async fn` that returns `Result`: the body's \
                 future is dropped and the function returns the `Error::Lost`",
            ))
        }
        Some(arg) if arg.value == OnLost::Cancel => {
            backend
                .builder
                .extend(quote!(.on_lost(#krate::OnLost::Report)));
            true
        }
        _ => false,
    };
    if !matches!(&args.backend, Some(arg) if arg.value == BackendKind::Postgres) {
        let only_pg = [
            ("key", args.key.as_ref().map(|k| k.key)),
            ("lease", args.lease.as_ref().map(|l| l.key)),
        ];
        if let Some((what, Some(span))) = only_pg.into_iter().find(|(_, s)| s.is_some()) {
            return Err(syn::Error::new(
                span,
                format!("`{what}` applies to `backend = \"postgres\"` locks only"),
            ));
        }
        return Ok(backend);
    }
    let file_only = [
        ("dir", args.dir.as_ref().map(|d| d.span)),
        ("cleanup", args.cleanup.as_ref().map(|c| c.key)),
    ];
    if let Some((what, Some(span))) = file_only.into_iter().find(|(_, s)| s.is_some()) {
        return Err(syn::Error::new(
            span,
            format!("`{what}` applies to lock files, not to `backend = \"postgres\"`"),
        ));
    }
    backend.postgres = true;
    backend.builder.extend(quote!(.postgres_from_env()));
    if let Some(key) = args.key.as_ref().map(|arg| arg.value) {
        backend.builder.extend(quote!(.postgres_key(#key)));
    }
    if let Some(ms) = args.lease.as_ref().map(|arg| arg.value.max(1)) {
        backend
            .builder
            .extend(quote!(.lease(::core::time::Duration::from_millis(#ms))));
    }
    Ok(backend)
}

fn expand(f: ItemFn, info: &FnInfo, plan: &Plan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Outer));
    // Leading items (`use`, `const`, nested `fn`) stay ahead of the inserted statement, or
    // clippy's `items_after_statements` would blame the user's code for our `let`.
    let leading = block
        .stmts
        .iter()
        .take_while(|s| matches!(s, syn::Stmt::Item(_)))
        .count();
    let (items, stmts) = block.stmts.split_at(leading);
    let Plan {
        krate,
        name,
        builder,
        mode,
        ..
    } = plan;
    let scope = syn::Ident::new("__lockmacro_scope", Span::mixed_site());
    let err = syn::Ident::new("__lockmacro_err", Span::mixed_site());
    let on_failure = plan.on_failure(&err);
    let mut make = quote!(#krate::Lock::new(#name) #builder);
    if plan.postgres {
        make = quote!(#krate::__lockmacro_postgres!(#make));
    }
    let site = quote! {
        static __LOCKMACRO_SITE: #krate::__private::Site =
            #krate::__private::Site::new(|| #make);
    };
    let body = if info.is_async {
        let hint = return_type_hint(&sig.output);
        let (run, on_lost) = if plan.cancel_on_lost {
            let lost = syn::Ident::new("__lockmacro_lost", Span::mixed_site());
            let from = quote_spanned!(plan.ret_span=> ::core::convert::From::from);
            (
                quote!(run_or_cancel),
                quote!(, |#lost| ::core::result::Result::Err(#from(#lost))),
            )
        } else {
            (quote!(run), TokenStream::new())
        };
        quote! {
            match { #site #krate::__private::enter_async(&__LOCKMACRO_SITE, #mode) }.await {
                ::core::result::Result::Ok(#scope) => #scope,
                ::core::result::Result::Err(#err) => #on_failure,
            }
            .#run(async move { #hint #(#items)* #(#stmts)* } #on_lost)
            .await
        }
    } else {
        quote! {
            #(#items)*
            let #scope = {
                #site
                match #krate::__private::enter(&__LOCKMACRO_SITE, #mode) {
                    ::core::result::Result::Ok(#scope) => #scope,
                    ::core::result::Result::Err(#err) => #on_failure,
                }
            };
            #(#stmts)*
        }
    };
    let brace = block.brace_token;
    let mut out = quote!(#(#outer)* #vis #sig);
    brace.surround(&mut out, |out| {
        out.extend(quote!(#(#inner)*));
        out.extend(body);
    });
    out
}

/// An `async move` block infers its output type from its own `return`s and `?`s, which fails
/// for `?` (the error type is unknown). A never-taken `return` of a value of the declared type
/// pins it, as tracing-attributes does. `impl Trait` cannot be named in a `let`, so no hint then.
fn return_type_hint(output: &ReturnType) -> TokenStream {
    let ReturnType::Type(_, ty) = output else {
        return TokenStream::new();
    };
    if contains_impl_trait(ty) {
        return TokenStream::new();
    }
    let ret = syn::Ident::new("__lockmacro_ret", Span::mixed_site());
    quote_spanned! {Span::call_site()=>
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::unreachable)]
        if false {
            let #ret: #ty = ::core::unreachable!();
            return #ret;
        }
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    fn any_impl(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => i == "impl",
            proc_macro2::TokenTree::Group(g) => any_impl(g.stream()),
            _ => false,
        })
    }
    any_impl(ty.to_token_stream())
}

#[cfg(test)]
mod tests {
    use super::contains_impl_trait;

    #[test]
    fn finds_impl_trait_anywhere_in_the_return_type() {
        let yes: [syn::Type; 3] = [
            syn::parse_quote!(impl Iterator<Item = u8>),
            syn::parse_quote!(Box<impl Fn()>),
            syn::parse_quote!((u8, impl Send)),
        ];
        assert!(yes.iter().all(contains_impl_trait));
        let no: syn::Type = syn::parse_quote!(Result<Vec<u8>, std::io::Error>);
        assert!(!contains_impl_trait(&no));
    }
}
