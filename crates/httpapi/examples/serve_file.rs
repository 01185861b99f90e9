//! Serves one file's bytes for every request under a prefix: the
//! application side of bench/listener.sh, and a minimal static server.
//! With `--cache` the responses are marked cacheable, so the listener
//! answers repeat requests itself (the kernel cache's role).
//!
//! ```sh
//! cargo run --release -p httpapi --example serve_file -- \
//!     --socket inetsrv-data/run/httpapi.sock --port 8082 --file README.md --cache
//! ```

use std::path::PathBuf;

use httpapi::{CachePolicy, Response, Session};

// As the worker does: a request costs a few small allocations, and
// mimalloc keeps them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut socket = httpapi::socket_for_state_dir(
        &std::env::var_os("INETSRV_HOME")
            .map_or_else(|| PathBuf::from("inetsrv-data"), PathBuf::from),
    );
    let mut port = 8082u16;
    let mut file = None;
    let mut cache = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned();
        match (args[i].as_str(), value) {
            ("--cache", _) => {
                cache = true;
                i += 1;
                continue;
            }
            ("--socket", Some(v)) => socket = PathBuf::from(v),
            ("--port", Some(v)) => port = v.parse().unwrap_or_else(|_| usage()),
            ("--file", Some(v)) => file = Some(PathBuf::from(v)),
            _ => usage(),
        }
        i += 2;
    }
    let Some(file) = file else { usage() };
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        eprintln!("{}: {e}", file.display());
        std::process::exit(1)
    });
    let body = bytes::Bytes::from(bytes);
    let session = Session::connect(&socket).await.unwrap_or_else(|e| {
        eprintln!("{}: {e}", socket.display());
        std::process::exit(1)
    });
    let mut queue = session
        .create_queue(&format!("serve_file_{port}"))
        .await
        .expect("queue");
    queue.set_receive_ahead(256);
    queue
        .add_url(&format!("http://+:{port}/"), 0)
        .await
        .expect("prefix");
    println!(
        "serving {} on port {port}{}",
        file.display(),
        if cache { " (cacheable)" } else { "" }
    );
    loop {
        let request = match queue.receive().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("serve_file: {e}");
                return;
            }
        };
        let mut response = Response::new(200)
            .header("Content-Type", "text/html")
            .header("ETag", "\"bench\"")
            .body(body.clone());
        if cache {
            response = response.cache(CachePolicy::UntilInvalidated);
        }
        tokio::spawn(async move {
            let _ = request.respond(response).await;
        });
    }
}

fn usage() -> ! {
    eprintln!("usage: serve_file --file PATH [--socket PATH] [--port N] [--cache]");
    std::process::exit(2)
}
