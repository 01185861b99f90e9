//! An ISAPI extension written in Rust with the `isapi` crate: the same
//! scenarios as the C test extensions (server variables, the whole body
//! read synchronously or asynchronously, TransmitFile, redirects, a child
//! request by EXEC_URL with its status, an unhealthy report, a panic, a
//! crash, a hang), chosen by the query string, built as a shared object:
//!
//! ```sh
//! cargo build -p isapi --example rust_echo      # target/debug/examples/librust_echo.so
//! inetsrv mb set W3SVC/1/ROOT/ScriptMaps ".rs,$PWD/target/debug/examples/librust_echo.so,1"
//! inetsrv webext add-file $PWD/target/debug/examples/librust_echo.so --enable
//! curl http://localhost:8080/x.rs?vars
//! ```

use isapi::extension::{ExecUrl, HttpExtension, Request, Status};

struct Echo;

/// Answers with the body's size and sum, read by asynchronous reads.
fn read_rest(request: &mut Request<'_>, mut body: Vec<u8>) -> Status {
    let total = request.total_bytes() as usize;
    if body.len() >= total {
        let text = format!(
            "async body {} bytes, sum {}\n",
            body.len(),
            body.iter().map(|&b| u64::from(b)).sum::<u64>()
        );
        let _ = request.send_headers("200 OK", "Content-Type: text/plain\r\n\r\n", true);
        let _ = request.write(text.as_bytes());
        return Status::SuccessKeepConn;
    }
    let started = request.read_async(64 * 1024, move |request, got| match got {
        Ok(piece) if !piece.is_empty() => {
            body.extend_from_slice(&piece);
            read_rest(request, body)
        }
        _ => Status::Error,
    });
    started.unwrap_or(Status::Error)
}

impl HttpExtension for Echo {
    fn description(&self) -> &str {
        "echo, in Rust"
    }

    fn handle(&self, request: &mut Request<'_>) -> Status {
        match request.query_string() {
            "redirect" => {
                let _ = request.redirect("/elsewhere/");
                return Status::Success;
            }
            "panic" => panic!("a bug in the extension"),
            "unhealthy" => {
                let _ = request.report_unhealthy("the cache is corrupt");
            }
            // A crash and a hang take down only this worker.
            "abort" => std::process::abort(),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            "async" => {
                let preloaded = request.preloaded().to_vec();
                return read_rest(request, preloaded);
            }
            "transmit" => {
                let path = request
                    .server_variable("HTTP_X_FILE")
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                let Ok(file) = std::fs::File::open(&path) else {
                    return Status::Error;
                };
                let head =
                    "Content-Type: application/octet-stream\r\nX-Sent-By: TransmitFile\r\n\r\n";
                return match request.transmit_file(&file, "200 OK", head, (0, 0), b"TAIL") {
                    Ok(()) => Status::SuccessKeepConn,
                    Err(_) => Status::Error,
                };
            }
            query if query.starts_with("exec=") => {
                // The child answers; its status goes into the log line.
                let url = query["exec=".len()..].to_string();
                let child = ExecUrl {
                    url: Some(&url),
                    ignore_current_interceptor: true,
                    ..ExecUrl::default()
                };
                return request
                    .exec_url(&child, |request, status| {
                        let code = status.map_or(0, |s| s.status);
                        let _ = request.append_log(&format!("&child={code}"));
                    })
                    .unwrap_or(Status::Error);
            }
            _ => {}
        }
        let body = match request.read_body() {
            Ok(body) => body,
            Err(_) => return Status::Error,
        };
        let variable = |name: &str| {
            request
                .server_variable(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "(none)".into())
        };
        let text = format!(
            "rust echo: {} {}?{}\nSERVER_NAME {}\nREMOTE_ADDR {}\nHTTP_USER_AGENT {}\nNO_SUCH_VARIABLE {}\nbody {} bytes, sum {}\n",
            request.method(),
            request.path_info(),
            request.query_string(),
            variable("SERVER_NAME"),
            variable("REMOTE_ADDR"),
            variable("HTTP_USER_AGENT"),
            variable("NO_SUCH_VARIABLE"),
            body.len(),
            body.iter().map(|&b| u64::from(b)).sum::<u64>(),
        );
        let _ = request.append_log("&rust=1");
        if request
            .send_headers(
                "200 OK",
                "Content-Type: text/plain\r\nX-Written-In: Rust\r\n\r\n",
                true,
            )
            .is_err()
        {
            return Status::Error;
        }
        match request.write(text.as_bytes()) {
            Ok(()) => Status::SuccessKeepConn,
            Err(_) => Status::Error,
        }
    }
}

isapi::export_extension!(Echo);
