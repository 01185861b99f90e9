//! `#[derive(Ndr)]` for structures: an IDL `struct` described once as a
//! Rust struct, its NDR marshalling generated — the fields' scalars in
//! order at the structure's alignment (the largest of its fields'), the
//! NDR64 trailing gap, then the fields' buffers (the referents of embedded
//! pointers), as C706 chapter 14 orders them.
//!
//! A conformant structure ends with `#[ndr(size_is = "count")] items:
//! Vec<T>`: the array's maximum count is marshalled first (C706 14.3.7.1,
//! the conformance of a conformant structure leads it), the elements
//! follow the other fields, and decoding checks that the count field
//! equals the conformance (the correlation check of [MS-RPCE]
//! 3.1.1.5.3.2.1.2). Used by `msrpc`; the generated code names
//! `::msrpc::ndr`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// A field's `#[ndr(...)]` attributes.
#[derive(Default)]
struct FieldAttrs {
    /// `size_is = "count"`.
    size_is: Option<syn::Ident>,
    /// `range(min, max)`.
    range: Option<(syn::LitInt, syn::LitInt)>,
    /// `switch_is = "field"`: a union whose discriminant must equal the
    /// field.
    switch_is: Option<syn::Ident>,
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in &field.attrs {
        if !attr.path().is_ident("ndr") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("size_is") {
                let lit: LitStr = meta.value()?.parse()?;
                out.size_is = Some(syn::Ident::new(&lit.value(), lit.span()));
                Ok(())
            } else if meta.path.is_ident("range") {
                let content;
                syn::parenthesized!(content in meta.input);
                let min: syn::LitInt = content.parse()?;
                content.parse::<syn::Token![,]>()?;
                let max: syn::LitInt = content.parse()?;
                out.range = Some((min, max));
                Ok(())
            } else if meta.path.is_ident("switch_is") {
                let lit: LitStr = meta.value()?.parse()?;
                out.switch_is = Some(syn::Ident::new(&lit.value(), lit.span()));
                Ok(())
            } else {
                Err(meta.error(
                    "supported: #[ndr(size_is = \"field\")], #[ndr(range(min, max))], \
                     #[ndr(switch_is = \"field\")]",
                ))
            }
        })?;
    }
    Ok(out)
}

#[proc_macro_derive(Ndr, attributes(ndr))]
pub fn derive_ndr(input: TokenStream) -> TokenStream {
    match expand(parse_macro_input!(input as DeriveInput)) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    if let Data::Enum(data) = &input.data {
        return expand_enum(&input, data);
    }
    let fields: Vec<&syn::Field> = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named.named.iter().collect(),
            _ => {
                return Err(syn::Error::new_spanned(
                    name,
                    "#[derive(Ndr)] needs named fields",
                ))
            }
        },
        _ => {
            return Err(syn::Error::new_spanned(
                name,
                "#[derive(Ndr)] describes structures, enumerations and unions",
            ))
        }
    };
    // The conformant array, if any, must be the last field.
    let mut conformant = None;
    let mut range_checks = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let attrs = field_attrs(f)?;
        if let Some(discriminant) = &attrs.switch_is {
            let ident = &f.ident;
            let ty = &f.ty;
            let what = format!(
                "switch_is({discriminant}) of {name}.{}",
                ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
            );
            // [MS-RPCE] 3.1.1.5.3.2.1.3: the union's discriminant is the
            // field's value.
            range_checks.push(quote! {
                d.correlate(#what, #discriminant as u64, <#ty>::switch_value(&#ident))?;
            });
        }
        if let Some((min, max)) = attrs.range {
            let ident = &f.ident;
            let what = format!(
                "range of {name}.{}",
                ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
            );
            range_checks.push(quote! {
                ::msrpc::ndr::check_range(#what, u64::try_from(#ident).unwrap_or(u64::MAX), #min, #max)?;
            });
        }
        if let Some(count) = attrs.size_is {
            if i + 1 != fields.len() {
                return Err(syn::Error::new_spanned(
                    f,
                    "the size_is array of a conformant structure is its last field",
                ));
            }
            conformant = Some(count);
        }
    }
    let ndr = quote!(::msrpc::ndr);
    let fixed: Vec<&syn::Field> = if conformant.is_some() {
        fields[..fields.len() - 1].to_vec()
    } else {
        fields.clone()
    };
    let fixed_idents: Vec<_> = fixed.iter().map(|f| f.ident.clone()).collect();
    let fixed_types: Vec<_> = fixed.iter().map(|f| f.ty.clone()).collect();
    let all_idents: Vec<_> = fields.iter().map(|f| f.ident.clone()).collect();

    let (
        array_align,
        encode_count,
        encode_array,
        encode_array_buffers,
        decode_count,
        decode_array,
        decode_array_buffers,
        check_count,
    ) = match &conformant {
        None => (
            quote!(),
            quote!(),
            quote!(),
            quote!(),
            quote!(),
            quote!(),
            quote!(),
            quote!(),
        ),
        Some(count) => {
            let last = fields[fields.len() - 1];
            let ident = &last.ident;
            let elem = element_type(&last.ty)?;
            let what = format!(
                "{name}.{}",
                ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
            );
            let corr = format!("size_is({count}) of {what}");
            (
                quote! {
                    align = align
                        .max(syntax.wide())
                        .max(<#elem as #ndr::Ndr>::align(syntax));
                },
                quote! { e.count(self.#ident.len()); },
                quote! {
                    for item in &self.#ident {
                        #ndr::Ndr::encode_scalars(item, e);
                    }
                },
                quote! {
                    for item in &self.#ident {
                        #ndr::Ndr::encode_buffers(item, e);
                    }
                },
                quote! {
                    let conformance = d.count(#what, <#elem as #ndr::Ndr>::align(d.syntax).min(8))?;
                },
                quote! {
                    let mut #ident = Vec::with_capacity(conformance);
                    for _ in 0..conformance {
                        #ident.push(<#elem as #ndr::Ndr>::decode_scalars(d)?);
                    }
                },
                quote! {
                    for item in &mut self.#ident {
                        #ndr::Ndr::decode_buffers(item, d)?;
                    }
                },
                quote! {
                    d.correlate(#corr, u64::try_from(#count).unwrap_or(u64::MAX), conformance as u64)?;
                },
            )
        }
    };

    Ok(quote! {
        impl #impl_generics #ndr::Ndr for #name #ty_generics #where_clause {
            fn align(syntax: #ndr::Syntax) -> usize {
                let mut align = 1usize;
                #( align = align.max(<#fixed_types as #ndr::Ndr>::align(syntax)); )*
                #array_align
                align
            }
            fn encode_scalars(&self, e: &mut #ndr::Encoder) {
                let align = <Self as #ndr::Ndr>::align(e.syntax);
                e.align(align);
                #encode_count
                let start = e.buf.len();
                #( #ndr::Ndr::encode_scalars(&self.#fixed_idents, e); )*
                #encode_array
                e.end_struct(align, start);
            }
            fn encode_buffers(&self, e: &mut #ndr::Encoder) {
                #( #ndr::Ndr::encode_buffers(&self.#fixed_idents, e); )*
                #encode_array_buffers
            }
            fn decode_scalars(d: &mut #ndr::Decoder<'_>) -> #ndr::Result<Self> {
                let align = <Self as #ndr::Ndr>::align(d.syntax);
                d.align(align)?;
                #decode_count
                let start = d.position();
                #( let #fixed_idents = <#fixed_types as #ndr::Ndr>::decode_scalars(d)?; )*
                #decode_array
                d.end_struct(align, start)?;
                #( #range_checks )*
                #check_count
                Ok(Self { #( #all_idents ),* })
            }
            fn decode_buffers(&mut self, d: &mut #ndr::Decoder<'_>) -> #ndr::Result<()> {
                #( #ndr::Ndr::decode_buffers(&mut self.#fixed_idents, d)?; )*
                #decode_array_buffers
                Ok(())
            }
        }
    })
}

/// The container-level `#[ndr(...)]` of an enumeration or union.
#[derive(Default)]
struct EnumAttrs {
    /// `v1_enum`: 32 bits in NDR 2.0 too.
    v1_enum: bool,
    /// `switch_type = "u32"`: a union, with this discriminant type.
    switch_type: Option<syn::Type>,
    /// `encapsulated`: aligned as a whole to its discriminant and arms.
    encapsulated: bool,
}

fn enum_attrs(attrs: &[syn::Attribute]) -> syn::Result<EnumAttrs> {
    let mut out = EnumAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("ndr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("v1_enum") {
                out.v1_enum = true;
            } else if meta.path.is_ident("encapsulated") {
                out.encapsulated = true;
            } else if meta.path.is_ident("switch_type") {
                let lit: LitStr = meta.value()?.parse()?;
                out.switch_type = Some(lit.parse()?);
            } else {
                return Err(meta.error(
                    "supported: #[ndr(v1_enum)], #[ndr(switch_type = \"u32\")], #[ndr(encapsulated)]",
                ));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// A union arm's `#[ndr(case = N)]` or `#[ndr(default)]`.
enum Case {
    Value(syn::Expr),
    Default,
}

fn variant_case(variant: &syn::Variant) -> syn::Result<Case> {
    let mut case = None;
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("ndr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("case") {
                case = Some(Case::Value(meta.value()?.parse()?));
            } else if meta.path.is_ident("default") {
                case = Some(Case::Default);
            } else {
                return Err(meta.error("supported: #[ndr(case = N)], #[ndr(default)]"));
            }
            Ok(())
        })?;
    }
    case.ok_or_else(|| {
        syn::Error::new_spanned(
            variant,
            "a union arm needs #[ndr(case = N)] or #[ndr(default)]",
        )
    })
}

/// Fieldless enums are NDR enumerations; enums with `switch_type` are
/// unions.
fn expand_enum(input: &DeriveInput, data: &syn::DataEnum) -> syn::Result<proc_macro2::TokenStream> {
    let attrs = enum_attrs(&input.attrs)?;
    match &attrs.switch_type {
        Some(switch_type) => expand_union(input, data, switch_type, attrs.encapsulated),
        None => expand_enumeration(input, data, attrs.v1_enum),
    }
}

/// An enumeration (C706 14.2.7, [MS-RPCE] 2.2.5.2): 16 bits unsigned in
/// NDR 2.0 (0..=32767) unless `[v1_enum]`, a long in NDR64; a value the
/// enumeration does not have is refused.
fn expand_enumeration(
    input: &DeriveInput,
    data: &syn::DataEnum,
    v1_enum: bool,
) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let ndr = quote!(::msrpc::ndr);
    let mut next: i64 = 0;
    let mut idents = Vec::new();
    let mut values = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                variant,
                "an enumeration's variants have no fields; a union needs #[ndr(switch_type = \"…\")]",
            ));
        }
        if let Some((_, expr)) = &variant.discriminant {
            next = discriminant_value(expr)?;
        }
        let limit = if v1_enum { i64::from(i32::MAX) } else { 0x7fff };
        if next < 0 && !v1_enum || next > limit || next < i64::from(i32::MIN) {
            return Err(syn::Error::new_spanned(
                variant,
                "outside the enumeration's range (0..=32767, or a 32-bit value with #[ndr(v1_enum)])",
            ));
        }
        idents.push(variant.ident.clone());
        values.push(next as i32 as u32);
        next += 1;
    }
    let what = name.to_string();
    Ok(quote! {
        impl #ndr::Ndr for #name {
            fn align(syntax: #ndr::Syntax) -> usize {
                if #v1_enum || syntax == #ndr::Syntax::Ndr64 { 4 } else { 2 }
            }
            fn encode_scalars(&self, e: &mut #ndr::Encoder) {
                let value: u32 = match self { #( Self::#idents => #values, )* };
                e.enum_value(value, #v1_enum);
            }
            fn decode_scalars(d: &mut #ndr::Decoder<'_>) -> #ndr::Result<Self> {
                match d.enum_value(#v1_enum)? {
                    #( #values => Ok(Self::#idents), )*
                    value => Err(#ndr::NdrError::EnumValue { what: #what, value: u64::from(value) }),
                }
            }
        }
    })
}

fn discriminant_value(expr: &syn::Expr) -> syn::Result<i64> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => int.base10_parse(),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => Ok(-discriminant_value(expr)?),
        _ => Err(syn::Error::new_spanned(
            expr,
            "an enumeration value is an integer literal",
        )),
    }
}

/// A union (C706 14.3.8, [MS-RPCE] 2.2.5.3.4.4): the discriminant, then
/// the selected arm. Its alignment (what a containing structure aligns
/// to) is the largest of the discriminant's and the arms'. In NDR64 the
/// union starts at that alignment and the arm is aligned to the largest
/// of the arms'; in NDR 2.0 the discriminant and the arm each align only
/// to their own type, unless the union is encapsulated (then it starts
/// aligned as a whole, like the structure it is).
///
/// Each variant is an arm: `#[ndr(case = N)] Name(T)` or an empty
/// `#[ndr(case = N)] Name`; `#[ndr(default)] Name(D)` (D the discriminant
/// type) takes every other value, with an empty arm. Without a default,
/// another value is refused (RPC_S_INVALID_TAG).
fn expand_union(
    input: &DeriveInput,
    data: &syn::DataEnum,
    switch_type: &syn::Type,
    encapsulated: bool,
) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let ndr = quote!(::msrpc::ndr);
    let what = name.to_string();
    let mut arm_types = Vec::new();
    let mut encode_arms = Vec::new();
    let mut encode_buffers = Vec::new();
    let mut decode_arms = Vec::new();
    let mut decode_buffers = Vec::new();
    let mut switch_values = Vec::new();
    let mut default_arm = None;
    for variant in &data.variants {
        let ident = &variant.ident;
        let field = match &variant.fields {
            Fields::Unit => None,
            Fields::Unnamed(f) if f.unnamed.len() == 1 => Some(f.unnamed[0].ty.clone()),
            _ => {
                return Err(syn::Error::new_spanned(
                    variant,
                    "a union arm holds one value (Name(T)) or none (Name)",
                ))
            }
        };
        match variant_case(variant)? {
            Case::Default => {
                if field.is_none() || default_arm.is_some() {
                    return Err(syn::Error::new_spanned(
                        variant,
                        "one #[ndr(default)] arm, Name(discriminant), with an empty arm",
                    ));
                }
                encode_arms.push(quote! { Self::#ident(tag) => e_tag(e, *tag), });
                switch_values.push(quote! { Self::#ident(tag) => *tag as u64, });
                encode_buffers.push(quote! { Self::#ident(_) => {} });
                decode_buffers.push(quote! { Self::#ident(_) => {} });
                default_arm = Some(quote! { tag => Self::#ident(tag), });
            }
            Case::Value(case) => {
                switch_values.push(match &field {
                    Some(_) => quote! { Self::#ident(_) => (#case) as u64, },
                    None => quote! { Self::#ident => (#case) as u64, },
                });
                match &field {
                    Some(ty) => {
                        arm_types.push(ty.clone());
                        encode_arms.push(quote! {
                            Self::#ident(arm) => {
                                e_tag(e, #case);
                                if e.syntax == #ndr::Syntax::Ndr64 {
                                    e.align(Self::ndr_arms_align(e.syntax));
                                }
                                #ndr::Ndr::encode_scalars(arm, e);
                            }
                        });
                        encode_buffers.push(
                            quote! { Self::#ident(arm) => #ndr::Ndr::encode_buffers(arm, e), },
                        );
                        decode_arms.push(quote! {
                            tag if tag == (#case) => {
                                if d.syntax == #ndr::Syntax::Ndr64 {
                                    d.align(Self::ndr_arms_align(d.syntax))?;
                                }
                                Self::#ident(<#ty as #ndr::Ndr>::decode_scalars(d)?)
                            }
                        });
                        decode_buffers.push(
                            quote! { Self::#ident(arm) => #ndr::Ndr::decode_buffers(arm, d)?, },
                        );
                    }
                    None => {
                        encode_arms.push(quote! { Self::#ident => e_tag(e, #case), });
                        encode_buffers.push(quote! { Self::#ident => {} });
                        decode_arms.push(quote! { tag if tag == (#case) => Self::#ident, });
                        decode_buffers.push(quote! { Self::#ident => {} });
                    }
                }
            }
        }
    }
    let fallback = default_arm.unwrap_or_else(|| {
        quote! {
            tag => return Err(#ndr::NdrError::InvalidTag { what: #what, value: tag as u64 }),
        }
    });
    Ok(quote! {
        impl #impl_generics #name #ty_generics #where_clause {
            /// The union's discriminant.
            pub fn switch_value(&self) -> u64 {
                match self { #( #switch_values )* }
            }

            fn ndr_arms_align(syntax: #ndr::Syntax) -> usize {
                let mut arms = 1usize;
                #( arms = arms.max(<#arm_types as #ndr::Ndr>::align(syntax)); )*
                arms
            }
        }

        impl #impl_generics #ndr::Ndr for #name #ty_generics #where_clause {
            fn align(syntax: #ndr::Syntax) -> usize {
                <#switch_type as #ndr::Ndr>::align(syntax).max(Self::ndr_arms_align(syntax))
            }
            fn encode_scalars(&self, e: &mut #ndr::Encoder) {
                fn e_tag(e: &mut #ndr::Encoder, tag: #switch_type) {
                    #ndr::Ndr::encode_scalars(&tag, e);
                }
                if #encapsulated || e.syntax == #ndr::Syntax::Ndr64 {
                    e.align(<Self as #ndr::Ndr>::align(e.syntax));
                }
                match self { #( #encode_arms )* }
            }
            fn encode_buffers(&self, e: &mut #ndr::Encoder) {
                match self { #( #encode_buffers )* }
            }
            fn decode_scalars(d: &mut #ndr::Decoder<'_>) -> #ndr::Result<Self> {
                if #encapsulated || d.syntax == #ndr::Syntax::Ndr64 {
                    d.align(<Self as #ndr::Ndr>::align(d.syntax))?;
                }
                let tag = <#switch_type as #ndr::Ndr>::decode_scalars(d)?;
                Ok(match tag {
                    #( #decode_arms )*
                    #fallback
                })
            }
            fn decode_buffers(&mut self, d: &mut #ndr::Decoder<'_>) -> #ndr::Result<()> {
                match self { #( #decode_buffers )* }
                Ok(())
            }
        }
    })
}

/// `T` of a `Vec<T>` field.
fn element_type(ty: &syn::Type) -> syn::Result<syn::Type> {
    if let syn::Type::Path(p) = ty {
        if let Some(seg) = p.path.segments.last() {
            if seg.ident == "Vec" {
                if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                    if let Some(syn::GenericArgument::Type(t)) = args.args.first() {
                        return Ok(t.clone());
                    }
                }
            }
        }
    }
    Err(syn::Error::new_spanned(ty, "a size_is field is a Vec<T>"))
}

/// `#[interface(uuid = "…", version = "major.minor")]` on a trait: an IDL
/// interface described once (`blocking` added: its calls may wait long,
/// and run off the connection's task; `#[blocking]` on a method: that
/// method's calls do). Each method is
/// `#[opnum(N)] fn name(&self, call: &Call, in_params…) -> CallResult<Out>`
/// where the in-parameters and `Out` (one type or a tuple: the
/// `[out]` parameters in order, the return value last) are [`Ndr`] types;
/// `#[ndr(range(min, max))]` on an in-parameter checks its range.
///
/// Generated beside the trait: `{Trait}Server<T>`, which implements
/// `msrpc::server::Interface` (unmarshal, check, call, marshal; unknown
/// opnums answer nca_s_op_rng_error), and `{Trait}Client`, whose async
/// methods of the same names marshal a call over a
/// `msrpc::client::Connection`.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut trait_item = parse_macro_input!(item as syn::ItemTrait);
    match expand_interface(attr.into(), &mut trait_item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Method {
    name: syn::Ident,
    opnum: u16,
    in_names: Vec<syn::Ident>,
    in_types: Vec<syn::Type>,
    ranges: Vec<(syn::Ident, syn::LitInt, syn::LitInt)>,
    out: syn::Type,
    docs: Vec<syn::Attribute>,
}

fn expand_interface(
    attr: proc_macro2::TokenStream,
    trait_item: &mut syn::ItemTrait,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut uuid = None;
    let mut version = None;
    let mut blocking = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("uuid") {
            uuid = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else if meta.path.is_ident("version") {
            version = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else if meta.path.is_ident("blocking") {
            blocking = true;
            Ok(())
        } else {
            Err(meta.error("supported: uuid = \"…\", version = \"major.minor\", blocking"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    let span = trait_item.ident.span();
    let uuid = uuid.ok_or_else(|| syn::Error::new(span, "#[interface] needs uuid = \"…\""))?;
    let version =
        version.ok_or_else(|| syn::Error::new(span, "#[interface] needs version = \"1.0\""))?;
    let uuid_text = uuid.value();
    if uuid_text.len() != 36 || uuid_text.split('-').count() != 5 {
        return Err(syn::Error::new_spanned(&uuid, "not a UUID"));
    }
    let (major, minor) = version
        .value()
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .ok_or_else(|| syn::Error::new_spanned(&version, "the version is major.minor"))?;

    let mut methods = Vec::new();
    // Methods marked #[blocking]: they may wait long (see `blocking`).
    let mut blocking_opnums: Vec<u16> = Vec::new();
    for item in &mut trait_item.items {
        let syn::TraitItem::Fn(f) = item else {
            continue;
        };
        let mut opnum = None;
        let mut method_blocks = false;
        let mut kept = Vec::new();
        for a in f.attrs.drain(..) {
            if a.path().is_ident("opnum") {
                let lit: syn::LitInt = a.parse_args()?;
                opnum = Some(lit.base10_parse::<u16>()?);
            } else if a.path().is_ident("blocking") {
                method_blocks = true;
            } else {
                kept.push(a);
            }
        }
        f.attrs = kept;
        let opnum = opnum.ok_or_else(|| {
            syn::Error::new_spanned(&f.sig.ident, "each method needs #[opnum(N)]")
        })?;
        if method_blocks {
            blocking_opnums.push(opnum);
        }
        let mut in_names = Vec::new();
        let mut in_types = Vec::new();
        let mut ranges = Vec::new();
        // Skip &self and the call context.
        for (i, input) in f.sig.inputs.iter_mut().enumerate() {
            let syn::FnArg::Typed(pt) = input else {
                continue;
            };
            let attrs = std::mem::take(&mut pt.attrs);
            if i < 2 {
                continue;
            }
            let syn::Pat::Ident(pi) = pt.pat.as_ref() else {
                return Err(syn::Error::new_spanned(
                    &pt.pat,
                    "parameters are plain names",
                ));
            };
            for a in attrs {
                if !a.path().is_ident("ndr") {
                    return Err(syn::Error::new_spanned(
                        a,
                        "only #[ndr(range(min, max))] here",
                    ));
                }
                a.parse_nested_meta(|meta| {
                    if meta.path.is_ident("range") {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        let min: syn::LitInt = content.parse()?;
                        content.parse::<syn::Token![,]>()?;
                        let max: syn::LitInt = content.parse()?;
                        ranges.push((pi.ident.clone(), min, max));
                        Ok(())
                    } else {
                        Err(meta.error("only #[ndr(range(min, max))] here"))
                    }
                })?;
            }
            in_names.push(pi.ident.clone());
            in_types.push((*pt.ty).clone());
        }
        let out = result_ok_type(&f.sig.output)?;
        let docs = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        methods.push(Method {
            name: f.sig.ident.clone(),
            opnum,
            in_names,
            in_types,
            ranges,
            out,
            docs,
        });
    }

    let trait_name = &trait_item.ident;
    let vis = &trait_item.vis;
    let server = syn::Ident::new(&format!("{trait_name}Server"), span);
    let client = syn::Ident::new(&format!("{trait_name}Client"), span);
    let name_text = trait_name.to_string();
    let ndr = quote!(::msrpc::ndr);
    let uuid_lit = &uuid;

    // Unmarshals a method's in-parameters and checks their ranges: what
    // the dispatch does before the call, and all the fuzz targets drive.
    let unmarshal =
        |m: &Method, syntax: proc_macro2::TokenStream, little_endian: proc_macro2::TokenStream| {
            let Method {
                name,
                in_names,
                in_types,
                ranges,
                ..
            } = m;
            let checks = range_checks(&name_text, name, ranges);
            quote! {
                #[allow(unused_variables)]
                let (#( #in_names, )*): (#( #in_types, )*) =
                    #ndr::params_from_bytes(stub, #syntax, #little_endian)
                        .map_err(::msrpc::server::Fault::stub)?;
                #( #checks )*
            }
        };
    let arms = methods.iter().map(|m| {
        let Method {
            name,
            opnum,
            in_names,
            ..
        } = m;
        let unmarshal = unmarshal(m, quote!(call.syntax), quote!(call.little_endian));
        quote! {
            #opnum => {
                #unmarshal
                let out = self.0.#name(call, #( #in_names ),*)?;
                Ok(#ndr::params_to_bytes(&out, call.syntax))
            }
        }
    });
    let decode_arms = methods.iter().map(|m| {
        let opnum = m.opnum;
        let unmarshal = unmarshal(m, quote!(syntax), quote!(little_endian));
        quote! {
            #opnum => {
                #unmarshal
                Ok(())
            }
        }
    });
    let opnums = methods.iter().map(|m| m.opnum);
    let client_methods = methods.iter().map(|m| {
        let Method {
            name,
            opnum,
            in_names,
            in_types,
            out,
            docs,
            ..
        } = m;
        quote! {
            #( #docs )*
            #[allow(clippy::too_many_arguments)]
            pub async fn #name(&mut self, #( #in_names: #in_types ),*) -> ::std::result::Result<#out, ::msrpc::client::CallError> {
                let syntax = self.connection.transfer_syntax(self.context_id)?;
                let stub = #ndr::params_to_bytes(&(#( #in_names, )*), syntax);
                let reply = self.connection.call_on(self.context_id, #opnum, self.object, stub).await?;
                #ndr::params_from_bytes::<#out>(&reply.stub, syntax, reply.little_endian)
                    .map_err(::msrpc::client::CallError::Stub)
            }
        }
    });

    Ok(quote! {
        #trait_item

        /// Serves the interface with an implementation of the trait.
        #vis struct #server<T>(pub T);

        impl<T: #trait_name + Send + Sync + 'static> ::msrpc::server::Interface for #server<T> {
            fn syntax(&self) -> ::msrpc::pdu::SyntaxId {
                ::msrpc::pdu::SyntaxId::new(
                    ::msrpc::Uuid::parse(#uuid_lit).expect("checked by #[interface]"),
                    #major,
                    #minor,
                )
            }
            fn name(&self) -> &'static str {
                #name_text
            }
            fn opnums(&self) -> &'static [u16] {
                &[#( #opnums ),*]
            }
            fn may_block(&self, opnum: u16) -> bool {
                #blocking || [#( #blocking_opnums ),*].contains(&opnum)
            }
            fn dispatch(
                &self,
                call: &::msrpc::server::Call,
                opnum: u16,
                stub: &[u8],
            ) -> ::std::result::Result<Vec<u8>, ::msrpc::server::Fault> {
                match opnum {
                    #( #arms )*
                    _ => Err(::msrpc::server::Fault::op_rng()),
                }
            }
        }

        impl<T> #server<T> {
            /// Unmarshals a request's in-parameters for `opnum` and checks
            /// their ranges, as dispatch does before the method runs.
            pub fn decode_request(
                opnum: u16,
                stub: &[u8],
                syntax: #ndr::Syntax,
                little_endian: bool,
            ) -> ::std::result::Result<(), ::msrpc::server::Fault> {
                match opnum {
                    #( #decode_arms )*
                    _ => Err(::msrpc::server::Fault::op_rng()),
                }
            }
        }

        /// Calls the interface on a bound presentation context.
        #vis struct #client<'c> {
            pub connection: &'c mut ::msrpc::client::Connection,
            pub context_id: u16,
            /// The object the calls are made on (a DCOM IPID), if any.
            pub object: ::std::option::Option<::msrpc::Uuid>,
        }

        impl<'c> #client<'c> {
            /// The interface's syntax identifier, to bind.
            pub fn syntax() -> ::msrpc::pdu::SyntaxId {
                ::msrpc::pdu::SyntaxId::new(
                    ::msrpc::Uuid::parse(#uuid_lit).expect("checked by #[interface]"),
                    #major,
                    #minor,
                )
            }

            /// Binds the interface on the connection (a new presentation
            /// context) and returns its client.
            pub async fn bind(connection: &'c mut ::msrpc::client::Connection) -> ::std::result::Result<#client<'c>, ::msrpc::client::CallError> {
                let context_id = connection.bind(Self::syntax()).await?;
                Ok(#client { connection, context_id, object: None })
            }

            /// Makes the calls on an object (PFC_OBJECT_UUID).
            pub fn on_object(mut self, object: ::msrpc::Uuid) -> Self {
                self.object = Some(object);
                self
            }

            #( #client_methods )*
        }
    })
}

/// The `[range]` checks of a method's parameters, as dispatch runs them.
fn range_checks(
    interface: &str,
    method: &syn::Ident,
    ranges: &[(syn::Ident, syn::LitInt, syn::LitInt)],
) -> Vec<proc_macro2::TokenStream> {
    let ndr = quote!(::msrpc::ndr);
    ranges
        .iter()
        .map(|(ident, min, max)| {
            let what = format!("range of {interface}.{method}'s {ident}");
            quote! {
                #ndr::check_range(#what, u64::try_from(#ident).unwrap_or(u64::MAX), #min, #max)
                    .map_err(|e| ::msrpc::server::Fault::stub(e))?;
            }
        })
        .collect()
}

/// `T` of a method's `-> Result<T, _>` or `-> CallResult<T>`.
fn result_ok_type(output: &syn::ReturnType) -> syn::Result<syn::Type> {
    if let syn::ReturnType::Type(_, ty) = output {
        if let syn::Type::Path(p) = ty.as_ref() {
            if let Some(seg) = p.path.segments.last() {
                if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                    if let Some(syn::GenericArgument::Type(t)) = args.args.first() {
                        return Ok(t.clone());
                    }
                }
            }
        }
    }
    Err(syn::Error::new_spanned(
        output,
        "a method returns CallResult<Out> (Out: the [out] parameters, then the return value)",
    ))
}
