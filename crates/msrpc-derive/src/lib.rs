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
            } else {
                Err(meta.error("supported: #[ndr(size_is = \"field\")], #[ndr(range(min, max))]"))
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
                "#[derive(Ndr)] describes structures",
            ))
        }
    };
    // The conformant array, if any, must be the last field.
    let mut conformant = None;
    let mut range_checks = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let attrs = field_attrs(f)?;
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
