//! `#[derive(Ndr)]` for structures: an IDL `struct` described once as a
//! Rust struct, its NDR marshalling generated — the fields' scalars in
//! order at the structure's alignment (the largest of its fields'), the
//! NDR64 trailing gap, then the fields' buffers (the referents of embedded
//! pointers), as C706 chapter 14 orders them. Used by `msrpc`; the
//! generated code names `::msrpc::ndr`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields};

#[proc_macro_derive(Ndr)]
pub fn derive_ndr(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            _ => {
                return syn::Error::new_spanned(name, "#[derive(Ndr)] needs named fields")
                    .to_compile_error()
                    .into()
            }
        },
        _ => {
            return syn::Error::new_spanned(name, "#[derive(Ndr)] describes structures")
                .to_compile_error()
                .into()
        }
    };
    let idents: Vec<_> = fields.iter().map(|f| f.ident.clone()).collect();
    let types: Vec<_> = fields.iter().map(|f| f.ty.clone()).collect();
    let ndr = quote!(::msrpc::ndr);
    let expanded = quote! {
        impl #impl_generics #ndr::Ndr for #name #ty_generics #where_clause {
            fn align(syntax: #ndr::Syntax) -> usize {
                let mut align = 1usize;
                #( align = align.max(<#types as #ndr::Ndr>::align(syntax)); )*
                align
            }
            fn encode_scalars(&self, e: &mut #ndr::Encoder) {
                let align = <Self as #ndr::Ndr>::align(e.syntax);
                e.align(align);
                let start = e.buf.len();
                #( #ndr::Ndr::encode_scalars(&self.#idents, e); )*
                e.end_struct(align, start);
            }
            fn encode_buffers(&self, e: &mut #ndr::Encoder) {
                #( #ndr::Ndr::encode_buffers(&self.#idents, e); )*
            }
            fn decode_scalars(d: &mut #ndr::Decoder<'_>) -> #ndr::Result<Self> {
                let align = <Self as #ndr::Ndr>::align(d.syntax);
                d.align(align)?;
                let start = d.position();
                #( let #idents = <#types as #ndr::Ndr>::decode_scalars(d)?; )*
                d.end_struct(align, start)?;
                Ok(Self { #( #idents ),* })
            }
            fn decode_buffers(&mut self, d: &mut #ndr::Decoder<'_>) -> #ndr::Result<()> {
                #( #ndr::Ndr::decode_buffers(&mut self.#idents, d)?; )*
                Ok(())
            }
        }
    };
    expanded.into()
}
