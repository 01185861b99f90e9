//! A program of its own that owns a URL prefix on the inetsrv listener:
//! it registers `http://+:PORT/hello/` and answers every request routed
//! there, while other programs (and inetsrv's sites) share the same port.
//!
//! ```sh
//! cargo run --release -p inetsrv -- start &          # the listener
//! cargo run -p httpapi --example hello -- --port 8081
//! curl http://127.0.0.1:8081/hello/world
//! ```
//!
//! Options: `--socket PATH` (default: `$INETSRV_HOME/run/httpapi.sock`,
//! else `./inetsrv-data/run/httpapi.sock`), `--port N` (default 8081),
//! `--path /P/` (default `/hello/`), `--queue NAME` (default `hello`),
//! `--open` to serve a queue another process created, `--cache` to let
//! the listener cache the answers, `--https` to register an `https://`
//! prefix: the listener terminates TLS with the port's SSL binding and
//! hands over the facts of the connection, which the answer lists under
//! the names of IIS's server variables (HTTPS_*, CERT_*):
//!
//! ```sh
//! inetsrv sslcert add --ipport 0.0.0.0:8444 --cert "localhost (self-signed)"
//! cargo run -p httpapi --example hello -- --https --port 8444
//! curl -k https://localhost:8444/hello/
//! ```

use std::path::PathBuf;

use httpapi::{CachePolicy, Response, Session};

struct Options {
    socket: PathBuf,
    port: u16,
    path: String,
    queue: String,
    open: bool,
    cache: bool,
    https: bool,
}

fn options() -> Result<Options, String> {
    let home = std::env::var_os("INETSRV_HOME")
        .map_or_else(|| PathBuf::from("inetsrv-data"), PathBuf::from);
    let mut o = Options {
        socket: httpapi::socket_for_state_dir(&home),
        port: 8081,
        path: "/hello/".into(),
        queue: "hello".into(),
        open: false,
        cache: false,
        https: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--socket" => o.socket = PathBuf::from(value("--socket")?),
            "--port" => {
                o.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port takes a number")?
            }
            "--path" => o.path = value("--path")?,
            "--queue" => o.queue = value("--queue")?,
            "--open" => o.open = true,
            "--cache" => o.cache = true,
            "--https" => o.https = true,
            "--help" | "-h" => {
                return Err(
                    "usage: hello [--socket PATH] [--port N] [--path /P/] [--queue NAME] [--open] [--cache] [--https]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = serve(options).await {
        eprintln!("hello: {e}");
        std::process::exit(1);
    }
}

async fn serve(o: Options) -> httpapi::Result<()> {
    let session = Session::connect(&o.socket).await?;
    let mut queue = if o.open {
        session.open_queue(&o.queue).await?
    } else {
        session.create_queue(&o.queue).await?
    };
    let scheme = if o.https { "https" } else { "http" };
    let prefix = format!("{scheme}://+:{}{}", o.port, o.path);
    if !o.open {
        queue.add_url(&prefix, 0).await?;
    }
    println!(
        "serving {prefix} (queue {}, pid {})",
        o.queue,
        std::process::id()
    );
    loop {
        let mut request = queue.receive().await?;
        let pid = std::process::id();
        tokio::spawn(async move {
            let body = match request.read_body(1 << 20).await {
                Ok(b) => b,
                Err(_) => return,
            };
            let mut text = format!(
                "hello from process {pid}: {} {} ({} body bytes)\n",
                request.method,
                request.url.path,
                body.len()
            );
            text.push_str(&tls_facts(request.tls.as_ref()));
            let mut response = Response::new(200)
                .header("Content-Type", "text/plain; charset=utf-8")
                .header("X-Served-By", pid.to_string())
                .body(text);
            if o.cache {
                response = response.cache(CachePolicy::UntilInvalidated);
            }
            let _ = request.respond(response).await;
        });
    }
}

/// The connection's TLS facts under IIS's server variable names.
fn tls_facts(tls: Option<&httpapi::proto::TlsInfo>) -> String {
    let Some(tls) = tls else {
        return "HTTPS: off\n".into();
    };
    let mut lines = vec![
        "HTTPS: on".to_string(),
        "SERVER_PORT_SECURE: 1".into(),
        format!("protocol: {}, cipher: {}", tls.protocol, tls.cipher),
        format!("HTTPS_KEYSIZE: {}", tls.key_size),
        format!("HTTPS_SERVER_SUBJECT: {}", tls.server_subject),
        format!("HTTPS_SERVER_ISSUER: {}", tls.server_issuer),
        format!(
            "server name (SNI): {}",
            tls.server_name.as_deref().unwrap_or("-")
        ),
    ];
    match &tls.client_certificate {
        Some(cert) => lines.extend([
            "CERT_FLAGS: 1".to_string(),
            format!("CERT_SUBJECT: {}", cert.subject),
            format!("CERT_ISSUER: {}", cert.issuer),
            format!("CERT_SERIALNUMBER: {}", cert.serial),
            format!("client certificate: {} bytes of DER", cert.der.len()),
        ]),
        None => lines.push("CERT_FLAGS: 0".into()),
    }
    lines.join("\n") + "\n"
}
