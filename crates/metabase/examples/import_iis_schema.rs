//! Regenerates `data/MBSchema.xml`, the schema inetsrv ships, from an IIS 6
//! MBSchema.xml: the file is parsed and written back by this crate's own
//! codec, so the shipped copy is in exactly the form inetsrv writes.
//!
//! Usage: cargo run -p metabase --example import_iis_schema -- IN.xml OUT.xml

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: import_iis_schema IN.xml OUT.xml".into());
    };
    let text = std::fs::read_to_string(input)?;
    let schema = metabase::schema::parse_schema(&text, input)?;
    std::fs::write(output, metabase::schema::write_schema(&schema))?;
    eprintln!(
        "{} properties, {} classes written to {output}",
        schema.properties().count(),
        schema.classes().len()
    );
    Ok(())
}
