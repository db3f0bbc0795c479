//! Step 3 of 3, code: the user's function with the lock taken at the top of its body, as the
//! checked [`Config`] says. Nothing is refused here: every mistake was caught by `check`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{AttrStyle, ItemFn, ReturnType, Type};

use crate::check::{
    Backend, Config, Dir, FileOptions, Lock, LockFile, Name, OnLost, Policy, Skipped, Wait,
};
use crate::item::FnInfo;

/// Input: the function and its checked configuration. Output: the function with a lock
/// acquisition inserted before its first statement (for `async fn`, the body runs inside a scope
/// future that keeps the lock on the call chain during each poll).
pub(crate) fn expand(f: ItemFn, info: &FnInfo, config: &Config) -> TokenStream {
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
    let krate = &config.krate;
    let deadline = deadline(krate, config.wait);
    let scope = syn::Ident::new("__lockmacro_scope", Span::mixed_site());
    let err = syn::Ident::new("__lockmacro_err", Span::mixed_site());
    let on_failure = on_failure(config, info, &err);
    let make = lock(krate, &config.lock);
    // Where the lock comes from: a `static` site that builds it once, or (a name that depends
    // on the call) built here at each call.
    let (enter, enter_async) = if config.lock.per_call() {
        (
            quote!(#krate::__private::enter_per_call(#make, #deadline)),
            quote!(#krate::__private::enter_async_per_call(#make, #deadline)),
        )
    } else {
        let site = quote! {
            static __LOCKMACRO_SITE: #krate::__private::Site =
                #krate::__private::Site::new(|| #make);
        };
        (
            quote!({ #site #krate::__private::enter(&__LOCKMACRO_SITE, #deadline) }),
            quote!({ #site #krate::__private::enter_async(&__LOCKMACRO_SITE, #deadline) }),
        )
    };
    let body = if info.is_async {
        let hint = return_type_hint(&sig.output);
        let (run, on_lost) = if config.lock.on_lost == OnLost::Cancel {
            let lost = syn::Ident::new("__lockmacro_lost", Span::mixed_site());
            let from = from_lock_error(krate, info, &lost);
            (
                quote!(run_or_cancel),
                quote!(, |#lost| ::core::result::Result::Err(#from)),
            )
        } else {
            (quote!(run), TokenStream::new())
        };
        quote! {
            match #enter_async.await {
                ::core::result::Result::Ok(#scope) => #scope,
                ::core::result::Result::Err(#err) => #on_failure,
            }
            .#run(async move { #hint #(#items)* #(#stmts)* } #on_lost)
            .await
        }
    } else {
        quote! {
            #(#items)*
            let #scope = match #enter {
                ::core::result::Result::Ok(#scope) => #scope,
                ::core::result::Result::Err(#err) => #on_failure,
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

/// The runtime's `Lock`: built once per process in the function's `Site`, or at each call.
fn lock(krate: &syn::Path, lock: &Lock) -> TokenStream {
    let new = |name: &Name| {
        let name = match name {
            Name::PerFile => quote!(::core::concat!(
                ::core::env!("CARGO_CRATE_NAME"),
                ":",
                ::core::file!()
            )),
            Name::Literal(lit) => lit.to_token_stream(),
            // Any string, by reference; a type error lands on the expression.
            Name::Constant(expr) | Name::PerCall(expr) => quote_spanned! {expr.span()=>
                #krate::__private::LockName::lock_name(&(#expr))
            },
        };
        quote!(#krate::Lock::new(#name))
    };
    let mut builder = TokenStream::new();
    let made = match &lock.backend {
        Backend::File(FileOptions {
            file,
            cleanup,
            slots,
        }) => {
            let made = match file {
                LockFile::Named { name, dir } => {
                    match dir {
                        Dir::Default => {}
                        Dir::System => builder.extend(quote!(.system())),
                        Dir::Given(dir) => builder.extend(quote!(.dir(#dir))),
                    }
                    new(name)
                }
                LockFile::At(path) => quote!(#krate::Lock::at(#path)),
            };
            if *cleanup {
                builder.extend(quote!(.cleanup()));
            }
            if let Some(slots) = slots {
                let slots = proc_macro2::Literal::u32_unsuffixed(slots.get());
                builder.extend(quote!(.slots(#slots)));
            }
            made
        }
        Backend::Postgres(pg) => new(&pg.name),
    };
    if lock.shared {
        builder.extend(quote!(.shared()));
    }
    if lock.on_lost == OnLost::Cancel {
        builder.extend(quote!(.on_lost(#krate::OnLost::Report)));
    }
    if let Backend::Postgres(pg) = &lock.backend {
        builder.extend(quote!(.postgres_from_env()));
        if let Some(key) = pg.key {
            builder.extend(quote!(.postgres_key(#key)));
        }
        if let Some(ms) = pg.lease_millis {
            builder.extend(quote!(.lease(::core::time::Duration::from_millis(#ms))));
        }
    }
    if lock.notice {
        builder.extend(quote!(.wait_notice(true)));
    }
    let lock_new = quote!(#made #builder);
    match lock.backend {
        Backend::File(_) => lock_new,
        // Through a runtime macro, which refuses it without the runtime's `postgres` feature.
        Backend::Postgres(_) => quote!(#krate::__lockmacro_postgres!(#lock_new)),
    }
}

/// The runtime's `Deadline` for the wait.
fn deadline(krate: &syn::Path, wait: Wait) -> TokenStream {
    match wait {
        Wait::Now => quote!(#krate::__private::Deadline::Now),
        Wait::Never => quote!(#krate::__private::Deadline::Never),
        Wait::After { millis } => quote!(
            #krate::__private::Deadline::after(::core::time::Duration::from_millis(#millis))
        ),
    }
}

/// What to do with the `Error` bound to `err` when the lock is not obtained.
fn on_failure(config: &Config, info: &FnInfo, err: &syn::Ident) -> TokenStream {
    let krate = &config.krate;
    match config.policy {
        Policy::Error => {
            // rustc reports a missing conversion on the argument: place it on the return type.
            let arg = syn::Ident::new(
                &err.to_string(),
                Span::mixed_site().located_at(info.ret_span),
            );
            let from = from_lock_error(krate, info, &arg);
            quote!(return ::core::result::Result::Err(#from))
        }
        Policy::Exit { code } => {
            let code = i32::from(code);
            quote!(#krate::__private::exit(#err, #code))
        }
        Policy::Panic => quote!(#krate::__private::panic(#err)),
        Policy::Skip(Skipped::Exit) => quote!(#krate::__private::skip_exit(#err)),
        Policy::Skip(Skipped::Unit) => quote!({
            #krate::__private::skip_or_panic(#err);
            return;
        }),
        Policy::Skip(Skipped::None) => quote!({
            #krate::__private::skip_or_panic(#err);
            return ::core::option::Option::None;
        }),
    }
}

/// `E::from(err)` (`err` a `lockmacro_runtime::Error`) for the function's error type, through the runtime's
/// `FromLockError`, whose missing implementation is one error on the return type saying what to
/// implement.
fn from_lock_error(krate: &syn::Path, info: &FnInfo, err: &syn::Ident) -> TokenStream {
    // The whole call at the return type (the crate path and the parentheses too), or rustc
    // blames the attribute.
    let krate: TokenStream = krate
        .to_token_stream()
        .into_iter()
        .map(|mut tree| {
            tree.set_span(info.ret_span);
            tree
        })
        .collect();
    quote_spanned!(info.ret_span=> #krate::__private::FromLockError::from_lock_error(#err))
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
