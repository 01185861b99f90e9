//! The metabase's hot paths at scale: load and save of 10,000 sites with 5
//! virtual directories each, and an inherited read at depth 6.
//!
//! `cargo bench -p metabase --bench metabase [-- --keep DIR]`; with
//! `--keep` the generated MetaBase.xml stays in DIR for peer tools (see
//! bench/metabase.sh). Prints one `name value unit` line per measurement.

use std::hint::black_box;
use std::time::{Duration, Instant};

use metabase::mbxml::parse_metabase;
use metabase::{GetMode, LockMode, MbPath, MetabaseFiles, Schema};

const SITES: usize = 10_000;
const VDIRS: usize = 5;

/// A MetaBase.xml in IIS's layout: the service, its defaults, and SITES
/// sites each with ROOT, VDIRS virtual directories under it and a
/// directory under the first (depth 6: /LM/W3SVC/n/ROOT/vdir1/images).
fn generate() -> String {
    let mut out = String::with_capacity(SITES * 1600);
    out.push_str("\u{feff}<?xml version =\"1.0\"?>\n<configuration xmlns=\"urn:microsoft-catalog:XML_Metabase_V64_0\">\n<MBProperty>\n");
    out.push_str("<IIS_Global\tLocation =\".\"\n\t\tChangeNumber=\"1\"\n\t\tHistoryMajorVersionNumber=\"1\"\n\t>\n</IIS_Global>\n");
    out.push_str("<IIS_ROOT\tLocation =\"/\"\n\t>\n</IIS_ROOT>\n");
    out.push_str("<IIsComputer\tLocation =\"/LM\"\n\t\tEnableHistory=\"0\"\n\t>\n</IIsComputer>\n");
    out.push_str("<IIsWebService\tLocation =\"/LM/W3SVC\"\n\t\tAuthFlags=\"AuthAnonymous\"\n\t\tDefaultDoc=\"Default.htm,index.htm\"\n\t\tDirBrowseFlags=\"DirBrowseShowDate | DirBrowseShowTime | EnableDefaultDoc\"\n\t>\n</IIsWebService>\n");
    for s in 1..=SITES {
        out.push_str(&format!(
            "<IIsWebServer\tLocation =\"/LM/W3SVC/{s}\"\n\t\tAppPoolId=\"Pool{p}\"\n\t\tServerBindings=\":80:site{s}.example.com\n\t\t\t:443:site{s}.example.com\"\n\t\tServerComment=\"Site number {s}\"\n\t>\n</IIsWebServer>\n",
            p = s % 50
        ));
        out.push_str(&format!(
            "<IIsWebVirtualDir\tLocation =\"/LM/W3SVC/{s}/ROOT\"\n\t\tAccessFlags=\"AccessRead | AccessScript\"\n\t\tAppRoot=\"/LM/W3SVC/{s}/ROOT\"\n\t\tPath=\"/srv/www/site{s}\"\n\t>\n</IIsWebVirtualDir>\n"
        ));
        for v in 1..=VDIRS {
            out.push_str(&format!(
                "<IIsWebVirtualDir\tLocation =\"/LM/W3SVC/{s}/ROOT/vdir{v}\"\n\t\tPath=\"/srv/shared/vdir{v}\"\n\t>\n</IIsWebVirtualDir>\n"
            ));
        }
        out.push_str(&format!(
            "<IIsWebDirectory\tLocation =\"/LM/W3SVC/{s}/ROOT/vdir1/images\"\n\t>\n</IIsWebDirectory>\n"
        ));
    }
    out.push_str("</MBProperty>\n</configuration>\n");
    out
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let keep = std::env::args()
        .skip_while(|a| a != "--keep")
        .nth(1)
        .map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().expect("temporary directory");
    let out_dir = keep.unwrap_or_else(|| dir.path().to_path_buf());
    std::fs::create_dir_all(&out_dir).expect("output directory");
    let file = out_dir.join("MetaBase.xml");
    let text = generate();
    std::fs::write(&file, &text).expect("write MetaBase.xml");
    let schema = Schema::standard();
    let keys = SITES * (3 + VDIRS) + 4;
    println!("keys {keys} count");
    println!("file_size {} bytes", text.len());

    let parse = best_of(5, || {
        parse_metabase(&text, "bench", &schema, None).expect("parse")
    });
    println!("parse {:.1} ms", parse.as_secs_f64() * 1e3);
    let load = best_of(5, || {
        MetabaseFiles::open_file(&file, LockMode::WhileWriting).expect("load")
    });
    println!("load {:.1} ms", load.as_secs_f64() * 1e3);

    let files = MetabaseFiles::open_file(&file, LockMode::WhileWriting).expect("load");
    let save = best_of(5, || files.save().expect("save"));
    println!("save {:.1} ms", save.as_secs_f64() * 1e3);
    let one = MbPath::parse("/LM/W3SVC/5000").unwrap();
    let write = best_of(5, || {
        files
            .metabase()
            .write(|t| t.set_text(&one, "ServerComment", &[format!("{:?}", Instant::now())]))
            .expect("write")
    });
    println!(
        "write_one_property_durably {:.1} ms",
        write.as_secs_f64() * 1e3
    );

    // DefaultDoc is set on /LM/W3SVC only: every read walks the whole path.
    let snapshot = files.metabase().snapshot();
    let deep = MbPath::parse("/LM/W3SVC/7777/ROOT/vdir1/images").unwrap();
    assert_eq!(deep.depth(), 6);
    let id = schema.property_by_name("DefaultDoc").unwrap().id;
    assert!(snapshot
        .lookup(&deep, id, GetMode::Inherited)
        .unwrap()
        .is_some());
    let n = 2_000_000u32;
    let resolve = best_of(3, || {
        for _ in 0..n {
            black_box(
                snapshot
                    .lookup(black_box(&deep), black_box(id), GetMode::Inherited)
                    .ok(),
            );
        }
    });
    println!(
        "resolve_depth6 {:.0} ns",
        resolve.as_nanos() as f64 / f64::from(n)
    );
    let n = 500_000u32;
    let get = best_of(3, || {
        for _ in 0..n {
            black_box(
                snapshot
                    .get(black_box(&deep), black_box(id), GetMode::Inherited)
                    .ok(),
            );
        }
    });
    println!(
        "get_with_origin_depth6 {:.0} ns",
        get.as_nanos() as f64 / f64::from(n)
    );
    let snap = best_of(3, || {
        for _ in 0..n {
            black_box(files.metabase().snapshot());
        }
    });
    println!("snapshot {:.0} ns", snap.as_nanos() as f64 / f64::from(n));
}
