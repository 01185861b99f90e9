//! A WQL query with a WHERE over every site of a large metabase.
//!
//! `cargo bench -p wmi --bench wql -- METABASE.xml` (bench/wql.sh passes
//! the 10,000-site file bench/metabase.sh's generator writes). Prints one
//! `name value unit` line per measurement.

use std::hint::black_box;
use std::time::{Duration, Instant};

use metabase::{LockMode, MetabaseFiles};
use wmi::{ClassModel, Provider};

const QUERY: &str = "SELECT Name, ServerComment FROM IIsWebServerSetting \
                     WHERE ServerComment LIKE '%99%' AND ServerAutoStart = TRUE";

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
    let Some(file) = std::env::args().skip(1).find(|a| a.ends_with(".xml")) else {
        eprintln!("usage: cargo bench -p wmi --bench wql -- METABASE.xml");
        std::process::exit(2);
    };
    let load = Instant::now();
    let files = MetabaseFiles::open_file(std::path::Path::new(&file), LockMode::WhileWriting)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let snapshot = files.metabase().snapshot();
    let load = load.elapsed();
    let model = ClassModel::from_schema(snapshot.schema());
    let rows = Provider::new(&model, &snapshot)
        .query(QUERY)
        .unwrap()
        .instances
        .len();
    // A fresh provider each run: nothing is cached between queries.
    let query = best_of(10, || {
        Provider::new(&model, &snapshot).query(QUERY).unwrap()
    });
    let classes = best_of(10, || ClassModel::from_schema(snapshot.schema()));
    println!("sites_matched {rows} rows");
    println!("load {:.1} ms", load.as_secs_f64() * 1e3);
    println!("class_model {:.2} ms", classes.as_secs_f64() * 1e3);
    println!("query {:.2} ms", query.as_secs_f64() * 1e3);
}
