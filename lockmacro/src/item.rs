//! Reading the annotated item: it must be a function with a body, and not `const`.

use proc_macro2::{Span, TokenStream};
use syn::{Ident, ItemFn, Pat, ReturnType, Type};

/// What `check` and `expand` need to know about the function besides its tokens.
pub(crate) struct FnInfo {
    pub(crate) is_main: bool,
    pub(crate) returns_result: bool,
    /// False only when the return type certainly is not a `Result` (none, `()`, a primitive, a
    /// reference, ...); a type alias might be one, so an explicit `"error"` policy is let through
    /// and rustc checks it.
    pub(crate) may_return_result: bool,
    /// The return type (or the signature's end when there is none).
    pub(crate) ret_span: Span,
    pub(crate) is_async: bool,
    /// The `fn` token: where "this function needs a policy" errors point.
    pub(crate) fn_span: Span,
    /// What the function returns, as far as `on_conflict = "skip"` is concerned.
    pub(crate) returns: Returns,
    /// The names a call brings into scope that an item (a `static`) cannot see: the arguments'
    /// bindings and the generic parameters. A `name = <path>` starting with one of them (or
    /// with `Self`) is evaluated at each call.
    pub(crate) call_names: Vec<Ident>,
}

/// The return types that can say "skipped" without running the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Returns {
    /// No return type, or `()`.
    Unit,
    /// `Option<..>` (any path ending in `Option`).
    Option,
    Other,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<(ItemFn, FnInfo)> {
    let f = match syn::parse2::<syn::Item>(tokens.clone()) {
        Ok(syn::Item::Fn(f)) => f,
        // syn keeps `fn f();` (a trait method without a body) as verbatim tokens.
        Ok(syn::Item::Verbatim(_)) | Err(_) => return Err(bodyless_or_other(tokens)),
        Ok(other) => return Err(not_a_function(&other, tokens)),
    };
    if let Some(const_token) = f.sig.constness {
        return Err(syn::Error::new(
            const_token.span,
            "`#[exclusive]` cannot be used on a `const fn`: taking a lock is a runtime effect",
        ));
    }
    let info = FnInfo {
        is_main: f.sig.ident == "main",
        returns_result: returns_result(&f.sig.output),
        may_return_result: may_return_result(&f.sig.output),
        ret_span: match &f.sig.output {
            ReturnType::Type(_, ty) => syn::spanned::Spanned::span(ty),
            ReturnType::Default => f.sig.paren_token.span.close(),
        },
        is_async: f.sig.asyncness.is_some(),
        fn_span: f.sig.fn_token.span,
        returns: returns(&f.sig.output),
        call_names: call_names(&f.sig),
    };
    Ok((f, info))
}

/// `Result<..>`, `io::Result<..>`, `anyhow::Result<..>`: any path whose last segment is `Result`.
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let mut ty: &Type = ty;
    while let Type::Paren(inner) = ty {
        ty = &inner.elem;
    }
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Result"))
}

fn returns(output: &ReturnType) -> Returns {
    let ReturnType::Type(_, ty) = output else {
        return Returns::Unit;
    };
    let mut ty: &Type = ty;
    while let Type::Paren(inner) = ty {
        ty = &inner.elem;
    }
    match ty {
        Type::Tuple(t) if t.elems.is_empty() => Returns::Unit,
        Type::Path(p)
            if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option") =>
        {
            Returns::Option
        }
        _ => Returns::Other,
    }
}

/// The arguments' bindings (through any pattern) and the generic parameters.
fn call_names(sig: &syn::Signature) -> Vec<Ident> {
    fn bindings(pat: &Pat, out: &mut Vec<Ident>) {
        match pat {
            Pat::Ident(p) => {
                out.push(p.ident.clone());
                if let Some((_, sub)) = &p.subpat {
                    bindings(sub, out);
                }
            }
            Pat::Tuple(t) => t.elems.iter().for_each(|p| bindings(p, out)),
            Pat::TupleStruct(t) => t.elems.iter().for_each(|p| bindings(p, out)),
            Pat::Struct(s) => s.fields.iter().for_each(|f| bindings(&f.pat, out)),
            Pat::Slice(s) => s.elems.iter().for_each(|p| bindings(p, out)),
            Pat::Reference(r) => bindings(&r.pat, out),
            Pat::Type(t) => bindings(&t.pat, out),
            Pat::Paren(p) => bindings(&p.pat, out),
            Pat::Or(o) => o.cases.iter().for_each(|p| bindings(p, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(r) => names.push(Ident::new("self", r.self_token.span)),
            syn::FnArg::Typed(t) => bindings(&t.pat, &mut names),
        }
    }
    for param in &sig.generics.params {
        match param {
            syn::GenericParam::Type(t) => names.push(t.ident.clone()),
            syn::GenericParam::Const(c) => names.push(c.ident.clone()),
            syn::GenericParam::Lifetime(_) => {}
        }
    }
    names
}

fn may_return_result(output: &ReturnType) -> bool {
    const NOT_RESULT: &[&str] = &[
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32",
        "i64", "i128", "isize", "f32", "f64", "String", "Option", "Vec", "Box", "ExitCode",
    ];
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let mut ty: &Type = ty;
    while let Type::Paren(inner) = ty {
        ty = &inner.elem;
    }
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| !NOT_RESULT.iter().any(|name| s.ident == name)),
        _ => false,
    }
}

fn not_a_function(item: &syn::Item, tokens: TokenStream) -> syn::Error {
    let message = "`#[exclusive]` can only be applied to functions";
    // Point at the item's keyword (`struct`, `impl`, ...) when we can name it.
    let span = match item {
        syn::Item::Struct(i) => Some(i.struct_token.span),
        syn::Item::Enum(i) => Some(i.enum_token.span),
        syn::Item::Impl(i) => Some(i.impl_token.span),
        syn::Item::Mod(i) => Some(i.mod_token.span),
        syn::Item::Trait(i) => Some(i.trait_token.span),
        syn::Item::Static(i) => Some(i.static_token.span),
        syn::Item::Const(i) => Some(i.const_token.span),
        syn::Item::Type(i) => Some(i.type_token.span),
        syn::Item::Use(i) => Some(i.use_token.span),
        _ => None,
    };
    match span {
        Some(span) => syn::Error::new(span, message),
        None => syn::Error::new_spanned(tokens, message),
    }
}

/// Not an item at all: most likely a trait method without a body.
fn bodyless_or_other(tokens: TokenStream) -> syn::Error {
    match syn::parse2::<syn::TraitItemFn>(tokens.clone()) {
        Ok(f) if f.default.is_none() => syn::Error::new_spanned(
            f.semi_token,
            "`#[exclusive]` needs a function body: put it on the implementations of this trait \
             method, or give the method a default body",
        ),
        _ => syn::Error::new_spanned(tokens, "`#[exclusive]` can only be applied to functions"),
    }
}
